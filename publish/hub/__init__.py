"""Stage 4, publishing: local files → a plan against a Hub revision → one commit → verification, with events.
All HTTP to the Hub goes through `client.Hub` (huggingface_hub's HfApi)."""
