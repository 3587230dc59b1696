"""The online solver: episode state, actions, costs, retrieval tools, reasoners and traces."""
