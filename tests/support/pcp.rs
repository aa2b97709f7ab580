//! A pcp client of the tests' own, written apart from the launcher's (src/pgpool/pcp.rs) so a
//! test can tell pgpool what to do, and read back pgpool's own view of a node, without the
//! launcher. It logs in as the launcher's pcp user with the hash in the runtime directory's
//! pcp.conf (pcp's MD5 login needs nothing more). Blocking, every read with a deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use md5::{Digest as _, Md5};

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct Pcp {
    s: UnixStream,
}

impl Pcp {
    /// Logs in to the pcp socket of the launcher's runtime directory `rundir`.
    pub fn login(rundir: &Path) -> Pcp {
        let conf = std::fs::read_to_string(rundir.join("pcp.conf")).expect("read pcp.conf");
        let (user, stored) = conf
            .lines()
            .find(|l| !l.starts_with('#'))
            .and_then(|l| l.split_once(':'))
            .expect("a user in pcp.conf");
        let s = UnixStream::connect(rundir.join(".s.PGSQL.9898")).expect("connect to pcp");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut p = Pcp { s };
        p.send(b'M', b"");
        let salt = p.recv(b'm');
        let hash = md5_hex(
            &[
                md5_hex(format!("{stored}{user}").as_bytes()).as_bytes(),
                &salt[..4],
            ]
            .concat(),
        );
        p.send(b'R', format!("{user}\0{hash}\0").as_bytes());
        assert!(p.recv(b'r').starts_with(b"AuthenticationOK\0"));
        p
    }

    fn send(&mut self, tag: u8, body: &[u8]) {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        self.s.write_all(&m).expect("write to pcp");
    }

    /// The body of the next message, which must be tagged `tag`.
    fn recv(&mut self, tag: u8) -> Vec<u8> {
        let mut head = [0u8; 5];
        self.s.read_exact(&mut head).expect("read from pcp");
        let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        let mut body = vec![0; len - 4];
        self.s.read_exact(&mut body).expect("read from pcp");
        assert_eq!(
            head[0] as char,
            tag as char,
            "pcp answered {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// `pcp_detach_node`: returns once pgpool has the node down.
    pub fn detach(&mut self, node: usize) {
        self.send(b'D', format!("{node}\0").as_bytes());
        assert!(self.recv(b'd').starts_with(b"CommandComplete\0"));
    }

    /// The node's status in pgpool's shared memory (`up`, `waiting`, `down`, ...), from
    /// `pcp_health_check_stats`.
    pub fn status(&mut self, node: usize) -> String {
        self.send(b'H', format!("{node}\0").as_bytes());
        let body = self.recv(b'h');
        let fields: Vec<&[u8]> = body.split(|&c| c == 0).collect();
        // CommandComplete, node id, host, port, status, ...
        String::from_utf8_lossy(fields[4]).into_owned()
    }
}

impl Drop for Pcp {
    fn drop(&mut self) {
        let _ = self.s.write_all(b"X\0\0\0\x04");
    }
}
