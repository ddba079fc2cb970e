//! A minimal HTTP/1.0 client for the operator's REST API under test: one request per
//! connection, the whole answer read until the server closes it. Enough for JSON calls
//! and for reading the first events of a server-sent event stream, without pulling an
//! HTTP client library into the tests. A fixture: it panics when the server cannot be
//! reached.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer: status code, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with an optional bearer token and JSON body.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut stream = send(address, method, path, token, body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    parse(&String::from_utf8_lossy(&raw))
}

/// Opens an event stream (`GET path`) and returns its status and a reader of its
/// `data:` lines, one event each.
pub fn events(
    address: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, impl Iterator<Item = String>) {
    let stream = send(address, "GET", path, token, None);
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_code(&status_line);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("header") == 0 || line.trim().is_empty() {
            break;
        }
    }
    let data = reader.lines().map_while(Result::ok).filter_map(|line| {
        line.strip_prefix("data:")
            .map(|data| data.trim_start().to_owned())
    });
    (status, data)
}

fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(330)))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {address}\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("send request");
    stream.write_all(body.as_bytes()).expect("send body");
    stream
}

fn status_code(status_line: &str) -> u16 {
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = status_code(lines.next().unwrap_or_default());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}
