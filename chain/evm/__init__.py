"""The EVM side of the chain app: anvil devnets (`anvil`), the compiled contracts (`artifacts`)."""
