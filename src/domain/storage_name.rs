//! Blob Storage's container rule, which Queue Storage shares: 3 to 63 of `a-z 0-9 -`, no
//! leading, trailing or doubled hyphen. Settings check queue names with it before anything
//! runs; both storage backends check every name they are given with it.

/// Whether `name` may name a blob container or a queue.
pub fn valid_storage_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}
