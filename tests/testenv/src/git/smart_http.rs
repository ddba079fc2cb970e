//! The test repositories over Git's smart HTTP protocol on 127.0.0.1, for GitOps
//! controllers that take only http(s) and ssh URLs (Flux's `GitRepository`).
//!
//! Git ships the server side as a CGI program, `git http-backend`; this is the smallest
//! web server in front of it that Git's clients (and go-git, which Flux uses) accept: one
//! thread per connection, one request per connection (`Connection: close`), request
//! bodies by `Content-Length` or chunked, the CGI response streamed back. Every
//! repository under the served directory is exported (`GIT_HTTP_EXPORT_ALL`), read-only
//! (http-backend refuses pushes from unauthenticated clients); nothing of the machine's
//! or the developer's Git settings takes part.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{GitRepository, git_command};
use crate::assets;
use crate::error::{Error, Result};

/// A client that stops sending or reading for this long loses its connection.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest request line or header line accepted.
const MAX_LINE: usize = 8 * 1024;

/// A running smart-HTTP Git server for the bare repositories under one directory.
/// Dropping it stops accepting connections (requests in flight finish).
#[derive(Debug)]
pub struct GitHttpServer {
    address: SocketAddr,
    root: PathBuf,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl GitHttpServer {
    /// Serves the repositories under `root` on a free 127.0.0.1 port, logging one line
    /// per request (and http-backend's complaints) to `log_path`.
    pub fn start(root: &Path, log_path: &Path) -> Result<GitHttpServer> {
        let git = assets::find_binary("git", true)?;
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
        let root = std::path::absolute(root)
            .map_err(|e| Error::io(format!("resolve {}", root.display()), e))?;
        let log = Arc::new(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(log_path)
                .map_err(|e| Error::io(format!("open {}", log_path.display()), e))?,
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("bind the Git HTTP server", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io("address of the Git HTTP server", e))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let backend = Backend {
            git,
            root: root.clone(),
        };
        let acceptor = {
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("git-http-server".into())
                .spawn(move || accept(&listener, &backend, &log, &stopping))
                .map_err(|e| Error::io("spawn the Git HTTP server thread", e))?
        };
        Ok(GitHttpServer {
            address,
            root,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:<port>/<path>.git` of `repository`, which must lie under the
    /// served directory.
    pub fn url(&self, repository: &GitRepository) -> Result<String> {
        let relative = repository.path().strip_prefix(&self.root).map_err(|_| {
            Error::Config(format!(
                "{} is not under the served directory {}",
                repository.path().display(),
                self.root.display()
            ))
        })?;
        Ok(format!("http://{}/{}", self.address, relative.display()))
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(
    listener: &TcpListener,
    backend: &Backend,
    log: &Arc<std::fs::File>,
    stopping: &AtomicBool,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let backend = backend.clone();
        let request_log = log.clone();
        let spawned = std::thread::Builder::new()
            .name("git-http-request".into())
            .spawn(move || {
                let line = match backend.serve(stream, &request_log) {
                    Ok(line) => line,
                    Err(e) => format!("error: {e}"),
                };
                let _ = writeln!(&*request_log, "{line}");
            });
        if let Err(e) = spawned {
            let _ = writeln!(&**log, "error: cannot spawn a request thread: {e}");
        }
    }
}

/// `git http-backend` for one directory of repositories.
#[derive(Clone, Debug)]
struct Backend {
    git: PathBuf,
    root: PathBuf,
}

/// What the CGI program needs of an HTTP request.
#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    git_protocol: Option<String>,
    body: Vec<u8>,
}

impl Backend {
    /// Answers one request on `stream`; returns the line to log.
    fn serve(&self, stream: TcpStream, log: &std::fs::File) -> std::io::Result<String> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let peer = stream.peer_addr()?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let request = match read_request(&mut reader) {
            Ok(request) => request,
            Err(e) => {
                let _ = write!(
                    writer,
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return Ok(format!("{peer} bad request: {e}"));
            }
        };
        let status = self.run_cgi(&request, peer, log, &mut writer)?;
        Ok(format!(
            "{peer} {} {}{}{} {status}",
            request.method,
            request.path,
            if request.query.is_empty() { "" } else { "?" },
            request.query
        ))
    }

    /// Runs `git http-backend` for `request` and streams its answer to `client` as an
    /// HTTP/1.1 response; returns the status line's code and text.
    fn run_cgi(
        &self,
        request: &Request,
        peer: SocketAddr,
        log: &std::fs::File,
        client: &mut TcpStream,
    ) -> std::io::Result<String> {
        let mut command: Command = git_command(&self.git);
        command
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("SERVER_SOFTWARE", "testmesh-testenv")
            .env("REQUEST_METHOD", &request.method)
            .env("PATH_INFO", &request.path)
            .env("QUERY_STRING", &request.query)
            .env("REMOTE_ADDR", peer.ip().to_string())
            .env("CONTENT_LENGTH", request.body.len().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?);
        for (variable, value) in [
            ("CONTENT_TYPE", &request.content_type),
            ("HTTP_CONTENT_ENCODING", &request.content_encoding),
            ("GIT_PROTOCOL", &request.git_protocol),
        ] {
            if let Some(value) = value {
                command.env(variable, value);
            }
        }
        let mut child = command.spawn()?;
        // Fed from another thread: the backend may answer before it has read it all.
        let feeder = child.stdin.take().map(|mut stdin| {
            let body = request.body.clone();
            std::thread::spawn(move || stdin.write_all(&body))
        });
        let mut output = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| std::io::Error::other("git http-backend has no stdout"))?,
        );

        let mut status = "200 OK".to_owned();
        let mut headers = String::new();
        loop {
            let line = read_line(&mut output)?;
            if line.is_empty() {
                break;
            }
            match line.split_once(':') {
                Some((name, value)) if name.eq_ignore_ascii_case("Status") => {
                    status = value.trim().to_owned();
                }
                Some(_) => headers.push_str(&format!("{line}\r\n")),
                None => {}
            }
        }
        write!(
            client,
            "HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n"
        )?;
        std::io::copy(&mut output, client)?;
        client.flush()?;
        if let Some(feeder) = feeder {
            let _ = feeder.join();
        }
        child.wait()?;
        Ok(status)
    }
}

/// Reads the request line, the headers and the body (by `Content-Length`, or chunked).
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Request> {
    let request_line = read_line(reader)?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("request line {request_line:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        ..Request::default()
    };
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("header {line:?}")));
        };
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = Some(
                    value
                        .parse()
                        .map_err(|_| invalid(format!("Content-Length {value:?}")))?,
                );
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-type" => request.content_type = Some(value),
            "content-encoding" => request.content_encoding = Some(value),
            "git-protocol" => request.git_protocol = Some(value),
            _ => {}
        }
    }
    if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            reader.read_exact(&mut request.body[start..])?;
            read_line(reader)?;
        }
    } else if let Some(length) = content_length {
        request.body.resize(length, 0);
        reader.read_exact(&mut request.body)?;
    }
    Ok(request)
}

/// One line without its `\r\n` or `\n`; an error at end of input or past [`MAX_LINE`].
fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed mid-request",
        ));
    }
    if line.len() > MAX_LINE {
        return Err(invalid("line too long".to_owned()));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("line is not UTF-8".to_owned()))
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_request_body_is_put_together() {
        let raw = "POST /r.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n\
                   Content-Type: application/x-git-upload-pack-request\r\n\
                   Transfer-Encoding: chunked\r\n\r\n4\r\nwant\r\n6;x=y\r\n 0000\n\r\n0\r\n\r\n";
        let request = read_request(&mut raw.as_bytes()).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/r.git/git-upload-pack");
        assert_eq!(request.query, "");
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-git-upload-pack-request")
        );
        assert_eq!(request.body, b"want 0000\n");
    }

    #[test]
    fn a_query_and_a_content_length_body_are_read() {
        let raw = "GET /r.git/info/refs?service=git-upload-pack HTTP/1.1\r\n\
                   Git-Protocol: version=2\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        let request = read_request(&mut raw.as_bytes()).unwrap();
        assert_eq!(request.path, "/r.git/info/refs");
        assert_eq!(request.query, "service=git-upload-pack");
        assert_eq!(request.git_protocol.as_deref(), Some("version=2"));
        assert_eq!(request.body, b"abc");
    }

    #[test]
    fn git_clones_and_fetches_over_the_server() {
        let dir = assets::runs_root().join(format!("git-http-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let served = dir.join("served");
        let repository = GitRepository::create(&served, "manifests").unwrap();
        let first = repository.commit("one", &[("a.yaml", "a: 1\n")]).unwrap();
        let server = GitHttpServer::start(&served, &dir.join("server.log")).unwrap();
        let url = server.url(&repository).unwrap();
        assert_eq!(
            url,
            format!("http://{}/manifests.git", server.address()),
            "a path relative to the served directory"
        );

        let checkout = dir.join("checkout");
        let git = |args: &[&str]| {
            let output = git_command(&repository.git)
                .args(args)
                .output()
                .expect("run git");
            assert!(
                output.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        };
        let checkout_arg = checkout.display().to_string();
        git(&["clone", "--quiet", &url, &checkout_arg]);
        assert_eq!(
            std::fs::read_to_string(checkout.join("a.yaml")).unwrap(),
            "a: 1\n"
        );
        assert_eq!(git(&["-C", &checkout_arg, "rev-parse", "HEAD"]), first);

        let second = repository.commit("two", &[("b.yaml", "b: 2\n")]).unwrap();
        git(&["-C", &checkout_arg, "pull", "--quiet", "--ff-only"]);
        assert_eq!(git(&["-C", &checkout_arg, "rev-parse", "HEAD"]), second);

        // Smart HTTP only: a push is refused, the repository stays as it was.
        std::fs::write(checkout.join("c.yaml"), "c: 3\n").unwrap();
        git(&["-C", &checkout_arg, "add", "c.yaml"]);
        git(&["-C", &checkout_arg, "commit", "--quiet", "-m", "three"]);
        let push = git_command(&repository.git)
            .args(["-C", &checkout_arg, "push", "--quiet", "origin", "main"])
            .output()
            .unwrap();
        assert!(!push.status.success(), "a push is refused");
        assert_eq!(repository.head().unwrap().as_deref(), Some(second.as_str()));

        drop(server);
        let _ = std::fs::remove_dir_all(dir);
    }
}
