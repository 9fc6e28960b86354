//! Writing one tar entry: a ustar header, preceded by a PAX extended header when a value
//! does not fit ustar (long or non-ASCII names and link targets, big ids, sizes, mtimes).

use std::io::{self, Read, Write};

use ::tar::{Builder, EntryType, Header};

/// ustar `name` field size.
const NAME_LEN: usize = 100;
/// ustar `prefix` field size.
const PREFIX_LEN: usize = 155;
/// Largest value of a 8-byte octal field (7 digits + NUL).
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (11 digits + NUL).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;
/// Name of the PAX extended header entries (readers ignore it; fixed for determinism).
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";

/// Everything recorded about one entry.
#[derive(Debug)]
pub(crate) struct EntryHeader<'a> {
    /// Path as stored in the archive (directories end with `/`).
    pub path: &'a [u8],
    pub kind: EntryType,
    /// Permission bits including setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the Unix epoch.
    pub mtime: u64,
    /// Content length (0 for everything but regular files).
    pub size: u64,
    /// Symlink target or hard-link target path.
    pub link: Option<&'a [u8]>,
    /// `(major, minor)` for character and block devices.
    pub device: Option<(u32, u32)>,
}

/// Appends the entry (PAX header if needed, ustar header, `data` padded to 512 bytes).
pub(crate) fn append_entry<W: Write, R: Read>(
    builder: &mut Builder<W>,
    entry: &EntryHeader<'_>,
    data: R,
) -> io::Result<()> {
    let records = pax_records(entry);
    if !records.is_empty() {
        let mut pax = Header::new_ustar();
        pax.set_entry_type(EntryType::XHeader);
        pax.set_mode(0o644);
        pax.set_uid(0);
        pax.set_gid(0);
        pax.set_mtime(entry.mtime.min(MAX_OCTAL_12));
        pax.set_size(records.len() as u64);
        set_name(&mut pax, PAX_HEADER_NAME);
        pax.set_cksum();
        builder.append(&pax, records.as_slice())?;
    }

    let mut header = Header::new_ustar();
    header.set_entry_type(entry.kind);
    header.set_mode(entry.mode & 0o7777);
    // Values too large for octal are written base-256 by the tar crate (GNU extension)
    // and also as PAX records above, which every modern reader prefers.
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime);
    header.set_size(entry.size);
    if let Some((major, minor)) = entry.device {
        header.set_device_major(major)?;
        header.set_device_minor(minor)?;
    }
    set_name(&mut header, entry.path);
    if let Some(link) = entry.link {
        let ustar = header.as_ustar_mut().expect("ustar header");
        let n = link.len().min(NAME_LEN);
        ustar.linkname[..n].copy_from_slice(&link[..n]);
    }
    header.set_cksum();
    builder.append(&header, data)
}

/// Fills the ustar name (and prefix when a split fits); a name that fits neither is
/// truncated here and carried in full by the PAX `path` record.
fn set_name(header: &mut Header, path: &[u8]) {
    let ustar = header.as_ustar_mut().expect("ustar header");
    if path.len() <= NAME_LEN {
        ustar.name[..path.len()].copy_from_slice(path);
        return;
    }
    if let Some((prefix, name)) = split_ustar(path) {
        ustar.prefix[..prefix.len()].copy_from_slice(prefix);
        ustar.name[..name.len()].copy_from_slice(name);
        return;
    }
    ustar.name.copy_from_slice(&path[..NAME_LEN]);
}

/// Splits a long path at a `/` so that it fits the ustar prefix and name fields.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    // Ignore a trailing '/' when looking for the split point (it stays in the name).
    let search_end = path.len().saturating_sub(1);
    path[..search_end]
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= PREFIX_LEN && path.len() - i - 1 <= NAME_LEN)
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(prefix, name)| !prefix.is_empty() && !name.is_empty())
}

fn needs_pax_name(name: &[u8]) -> bool {
    name.len() > NAME_LEN || !name.is_ascii()
}

/// The PAX records needed for this entry, already serialized (empty if none).
fn pax_records(entry: &EntryHeader<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let path_pax = needs_pax_name(entry.path);
    let link_pax = entry.link.is_some_and(needs_pax_name);
    let binary = (path_pax && std::str::from_utf8(entry.path).is_err())
        || (link_pax && entry.link.is_some_and(|l| std::str::from_utf8(l).is_err()));
    // Keys in a fixed order; hdrcharset first so readers know how to decode the rest.
    if binary {
        push_record(&mut out, "hdrcharset", b"BINARY");
    }
    if entry.gid > MAX_OCTAL_8 {
        push_record(&mut out, "gid", entry.gid.to_string().as_bytes());
    }
    if link_pax {
        push_record(&mut out, "linkpath", entry.link.unwrap_or_default());
    }
    if entry.mtime > MAX_OCTAL_12 {
        push_record(&mut out, "mtime", entry.mtime.to_string().as_bytes());
    }
    if path_pax {
        push_record(&mut out, "path", entry.path);
    }
    if entry.size > MAX_OCTAL_12 {
        push_record(&mut out, "size", entry.size.to_string().as_bytes());
    }
    if entry.uid > MAX_OCTAL_8 {
        push_record(&mut out, "uid", entry.uid.to_string().as_bytes());
    }
    out
}

/// Appends one `"<len> <key>=<value>\n"` record, where `<len>` counts the whole record
/// including its own digits.
fn push_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_record(&mut out, key, value);
        out
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(record("path", b"abc"), b"12 path=abc\n");
        assert_eq!(record("a", b"bcde"), b"9 a=bcde\n");
        // 9 bytes + 1 digit would be 10, which has 2 digits -> 11.
        assert_eq!(record("a", b"bcdef"), b"11 a=bcdef\n");
        let long = vec![b'x'; 95];
        let r = record("path", &long);
        let len: usize = std::str::from_utf8(&r[..3]).unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }

    fn entry(path: &[u8]) -> EntryHeader<'_> {
        EntryHeader {
            path,
            kind: EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            device: None,
        }
    }

    #[test]
    fn short_ascii_names_need_no_pax() {
        assert!(pax_records(&entry(b"usr/bin/env")).is_empty());
    }

    #[test]
    fn long_and_non_ascii_names_get_pax_path() {
        let long = vec![b'a'; 150];
        let r = pax_records(&entry(&long));
        assert!(r.ends_with(&[b"path=".as_slice(), &long, b"\n"].concat()));
        let r = pax_records(&entry("caf\u{e9}".as_bytes()));
        assert!(!r.windows(10).any(|w| w == b"hdrcharset"));
        let r = pax_records(&entry(b"bad\xffname"));
        assert!(r.starts_with(b"21 hdrcharset=BINARY\n"), "{r:?}");
    }

    #[test]
    fn big_ids_get_pax_records() {
        let mut e = entry(b"f");
        e.uid = 1 << 32;
        e.gid = 5;
        let r = String::from_utf8(pax_records(&e)).unwrap();
        assert_eq!(r, "18 uid=4294967296\n");
    }

    #[test]
    fn huge_sizes_and_mtimes_get_pax_records() {
        let mut e = entry(b"f");
        e.size = 1 << 34;
        e.mtime = 1 << 34;
        let r = String::from_utf8(pax_records(&e)).unwrap();
        assert_eq!(r, "21 mtime=17179869184\n20 size=17179869184\n");
    }

    #[test]
    fn ustar_split_respects_field_sizes() {
        let mut path = vec![b'd'; 120];
        path.push(b'/');
        path.extend_from_slice(&[b'f'; 30]);
        let (prefix, name) = split_ustar(&path).unwrap();
        assert_eq!(prefix.len(), 120);
        assert_eq!(name.len(), 30);
        assert!(split_ustar(&[b'x'; 150]).is_none());
    }
}
