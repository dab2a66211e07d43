"""HTTP on both sides of the node: routes that translate requests into service calls, and body
limits shared with the outbound client. Routes hold no logic of their own and never open storage."""
