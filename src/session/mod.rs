//! session: the per-connection relay state machine.
