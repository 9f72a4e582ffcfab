"""The member API (`/api/v1/`): one module per resource, each with its own input and output shapes."""
