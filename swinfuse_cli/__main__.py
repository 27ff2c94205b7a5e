from swinfuse.cli import main

main()
