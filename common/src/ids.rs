//! The two names every part of the system passes around: a session's id and a pod's name.
//!
//! Both are plain strings on the wire (`#[serde(transparent)]`), but distinct types in code, so a pod name can
//! never be handed where a session id is expected. Neither type checks its content: ids arrive from clients in
//! URL paths and are only ever compared with ids the provisioner made (after the token check), and pod names
//! come from the backend.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The string form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        /// Reads as the string it wraps (`&PodName` where a `&str` is wanted); the reverse needs a conversion.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type! {
    /// A session's id: 128 random bits in hex, made by the provisioner.
    SessionId
}

name_type! {
    /// A pod's name in the pool: a Kubernetes Job's name, or a local child process's name.
    PodName
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_are_plain_strings_on_the_wire() {
        let id = SessionId::new("abc");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""abc""#);
        assert_eq!(
            serde_json::from_str::<PodName>(r#""session-1""#).unwrap(),
            "session-1"
        );
        assert_eq!(id.to_string(), "abc");
    }

    #[test]
    fn maps_keyed_by_a_name_are_looked_up_by_str() {
        let map = HashMap::from([(SessionId::new("s1"), 1)]);
        assert_eq!(map.get("s1"), Some(&1));
    }
}
