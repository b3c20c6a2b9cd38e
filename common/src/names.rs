//! Friendly display names for pods: `ping-server-1` becomes something like `Swift-Falcon-123`.
//!
//! The name is a pure function of the pod name (FNV-1a hash, fixed word lists), so every service and the page
//! derive the same name for the same pod without talking to each other. Changing the word lists changes every
//! name: treat them as part of the protocol.

const ADJECTIVES: &[&str] = &[
    "Swift", "Brave", "Calm", "Eager", "Bright", "Clever", "Bold", "Gentle", "Lucky", "Quiet", "Rapid",
    "Sunny", "Witty", "Noble", "Keen", "Merry", "Nimble", "Proud", "Silent", "Steady", "Vivid", "Wild",
    "Zesty", "Agile", "Cosmic", "Daring", "Fuzzy", "Golden", "Jolly", "Mighty", "Plucky", "Royal",
];

const ANIMALS: &[&str] = &[
    "Falcon", "Otter", "Badger", "Heron", "Lynx", "Panda", "Raven", "Tiger", "Walrus", "Yak", "Zebra",
    "Koala", "Gecko", "Bison", "Crane", "Dolphin", "Eagle", "Ferret", "Gazelle", "Hare", "Ibis", "Jaguar",
    "Lemur", "Marmot", "Narwhal", "Ocelot", "Puffin", "Quokka", "Salmon", "Toucan", "Viper", "Wombat",
];

/// 64-bit FNV-1a: tiny, stable across platforms and releases (unlike `std`'s `DefaultHasher`). Not for
/// secrets; for names and fingerprints.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The friendly, stable display name of a pod: `Adjective-Animal-NNN` (NNN in 100..=999).
pub fn display_name(pod_name: &str) -> String {
    let hash = fnv1a(pod_name.as_bytes());
    // Take independent bit ranges of the hash for each part.
    let adjective = ADJECTIVES[(hash % ADJECTIVES.len() as u64) as usize];
    let animal = ANIMALS[((hash >> 16) % ANIMALS.len() as u64) as usize];
    let number = 100 + (hash >> 32) % 900;
    format!("{adjective}-{animal}-{number}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn display_name_is_stable_and_well_formed() {
        let name = display_name("ping-server-0");
        assert_eq!(name, display_name("ping-server-0"));
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(ADJECTIVES.contains(&parts[0]));
        assert!(ANIMALS.contains(&parts[1]));
        let number: u32 = parts[2].parse().unwrap();
        assert!((100..=999).contains(&number));
    }

    #[test]
    fn pinned_values_do_not_drift() {
        // If this fails, every pod in every running deployment just changed its name: bump deliberately.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn different_pods_mostly_get_different_names() {
        let names: HashSet<String> = (0..200).map(|i| display_name(&format!("session-{i}"))).collect();
        assert!(
            names.len() > 190,
            "only {} distinct names for 200 pods",
            names.len()
        );
    }
}
