//! A token endpoint the test controls: it forwards `POST`s to the real one (the OAuth
//! server's `/token`), except that, when armed, it holds the next request: reads it, never
//! forwards it and never answers, as a provider that hangs would. The test then knows that the
//! control plane that sent it is in the middle of a refresh (and holds the refresh lease), and
//! that the refresh token it presented never reached the provider.

use crate::local_server::LocalServer;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    upstream: String,
    hold_next: bool,
    /// Held requests: their sockets stay open until the gate is dropped.
    held: Vec<TcpStream>,
    forwarded: usize,
}

pub struct TokenGate {
    /// The endpoint, e.g. `http://127.0.0.1:41234/token`.
    pub url: String,
    state: Arc<Mutex<State>>,
    _server: LocalServer,
}

impl TokenGate {
    /// Forwards to `upstream` (a token endpoint URL; may be set later, before the first
    /// request, with [`TokenGate::set_upstream`]).
    pub fn start(upstream: &str) -> TokenGate {
        let state = Arc::new(Mutex::new(State {
            upstream: upstream.to_owned(),
            ..State::default()
        }));
        let server = LocalServer::start("token gate", state.clone(), serve);
        TokenGate {
            url: format!("http://{}/token", server.addr),
            state,
            _server: server,
        }
    }

    pub fn set_upstream(&self, upstream: &str) {
        upstream.clone_into(&mut self.lock().upstream);
    }

    /// Holds the next request instead of forwarding it.
    pub fn hold_next(&self) {
        self.lock().hold_next = true;
    }

    /// How many requests are held.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// How many requests were forwarded.
    pub fn forwarded(&self) -> usize {
        self.lock().forwarded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request per connection (the answer says `Connection: close`).
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            if name == "authorization" || name == "content-type" || name == "accept" {
                headers.push((name, value));
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let upstream = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if s.hold_next {
            s.hold_next = false;
            s.held.push(stream);
            return;
        }
        s.forwarded += 1;
        s.upstream.clone()
    };
    let mut req = crate::http().post(&upstream).body(body);
    for (name, value) in &headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let (status, content_type, answer) = match req.send() {
        Ok(r) => {
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            (
                status,
                ct,
                r.bytes().map(|b| b.to_vec()).unwrap_or_default(),
            )
        }
        Err(e) => (502, "text/plain".to_owned(), e.to_string().into_bytes()),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = stream.write_all(&answer);
}
