from swinfuse_cli.cli import main

main()
