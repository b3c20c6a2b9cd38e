//! The session provisioner (built in its own issue).

fn main() {}
