//! The Leptos front end (built in its own issue).
