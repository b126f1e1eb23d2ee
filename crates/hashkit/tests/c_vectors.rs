//! Hash values computed by nutcracker's own C hash functions (see test-data/README.md):
//! every tail length, bytes >= 0x80, single bytes and random keys, for 11 hashes
//! (md5 is covered by the unit vectors and the golden placement data).

use nc_hashkit::HashKind;

const VECTORS: &str = include_str!("../test-data/hash_vectors.csv");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn matches_the_c_implementation() {
    let mut checked = 0;
    let mut seen = std::collections::HashSet::new();
    for line in VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.split(',');
        let (name, key, value) = (
            cols.next().unwrap(),
            cols.next().unwrap(),
            cols.next().unwrap(),
        );
        let kind = HashKind::from_name(name).unwrap_or_else(|| panic!("unknown hash {name}"));
        let key = unhex(key);
        let expect: u32 = value.parse().unwrap();
        assert_eq!(
            kind.hash(&key),
            expect,
            "{name}({key:02x?}) len {}",
            key.len()
        );
        seen.insert(kind);
        checked += 1;
    }
    assert_eq!(seen.len(), 11, "every hash but md5 is covered");
    assert!(checked > 1000);
}
