//! The raw HTTP/1.1 client of the instruction counts: one keep-alive connection sending one
//! request at a time, with nothing between it and the socket.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One keep-alive HTTP/1.1 connection sending one request at a time.
pub(crate) struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub(crate) fn connect(port: u16) -> Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends a GET with `authorization` (if any); the answer's status.
    pub(crate) fn get(&mut self, authorization: Option<&str>) -> Result<u16> {
        let auth = authorization
            .map(|a| format!("authorization: {a}\r\n"))
            .unwrap_or_default();
        let req = format!("GET / HTTP/1.1\r\nhost: bench\r\n{auth}\r\n");
        self.stream.write_all(req.as_bytes())?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("Envoy closed the connection");
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        let head = String::from_utf8_lossy(self.buf.get(..head_end).unwrap_or_default());
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while self.buf.len() < head_end + length {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("Envoy closed the connection mid-body");
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        Ok(status)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
