"""The swinfuse network: SwinFusion's encoders and cross-domain fusion, a prompt-modulated (FiLM) decoder."""
