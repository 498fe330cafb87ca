"""Solana: a local JSON-RPC devnet on LiteSVM (`devnet`) and the SOL-deposit scanner that reads
any Solana RPC over HTTP (`scan`). Neither imports Django."""
