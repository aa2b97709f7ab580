//! pool_passwd read back, the inverse of the launcher's writer: one `user:TEXTpassword` line,
//! `\` and `:` escaped with a backslash.

/// A pool_passwd line read as pgpool 4.3.5 reads it (`userMatchesString`, then `getNextToken`):
/// `(user, password)`, or None when it is not one `user:TEXT...` line.
pub fn read(line: &str) -> Option<(String, String)> {
    let line = line.strip_suffix('\n')?;
    if line.contains('\n') {
        return None;
    }
    let b = line.as_bytes();
    let (user, rest) = token(b, usize::MAX);
    // getNextToken keeps at most 128 bytes (MAX_TOKEN_LEN).
    let (pw, _) = token(rest.get(1..).unwrap_or_default(), 128);
    let pw = String::from_utf8(pw).ok()?;
    Some((
        String::from_utf8(user).ok()?,
        pw.strip_prefix("TEXT")?.to_string(),
    ))
}

/// One pool_passwd token: up to an unescaped `:` (a backslash escapes the next byte), at most
/// `limit` bytes; returns it and the rest, starting at the `:`.
fn token(b: &[u8], limit: usize) -> (Vec<u8>, &[u8]) {
    let (mut i, mut out, mut slash) = (0, Vec::new(), false);
    while i < b.len() && out.len() < limit {
        if b[i] == b'\\' && !slash {
            slash = true;
            i += 1;
            continue;
        }
        if b[i] == b':' && !slash {
            break;
        }
        slash = false;
        out.push(b[i]);
        i += 1;
    }
    (out, &b[i..])
}
