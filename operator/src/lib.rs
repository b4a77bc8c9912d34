//! The fabbrica operator: controllers that make declared factories true on a cluster.
