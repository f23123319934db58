"""Message plumbing shared by the gateway and the contexts: envelopes, topology, outbox, inbox, workers."""
