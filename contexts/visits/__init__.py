"""The visits context: a service visit books a desk slot and a workshop position, both or neither."""
