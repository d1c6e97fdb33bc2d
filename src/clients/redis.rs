//! Just enough of the Redis protocol (RESP2) for the restore: commands as arrays of
//! bulk strings, and the five reply types. A client library would bring a connection
//! pool, clustering and TLS the step does not use; this is a page of code.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// Longest status line or bulk string accepted (Redis's own limit for bulk strings is
/// 512 MiB; nothing the restore reads comes near 1 MiB).
const MAXIMUM_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// Arrays nested deeper than this are refused (replies the restore reads are flat).
const MAXIMUM_DEPTH: usize = 8;

/// A reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$5 hello`, or `$-1` (none).
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or `*-1` (none).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text when it is a status or a bulk string.
    #[must_use]
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(text) => Some(text.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Reply::Error(_) | Reply::Integer(_) | Reply::Bulk(None) | Reply::Array(_) => None,
        }
    }
}

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Reading or writing the socket failed, or the server closed it.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The bytes are not RESP.
    #[error("not a Redis reply: {0}")]
    Malformed(String),
}

impl ProtocolError {
    /// Whether the server closed the connection (what a successful `SHUTDOWN` does).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self, ProtocolError::Io(error) if matches!(
            error.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ))
    }
}

/// One connection to a server.
pub struct Connection {
    stream: BufStream<TcpStream>,
    timeout: Duration,
}

impl Connection {
    /// Wraps a connected socket; each command must be answered within `timeout`.
    #[must_use]
    pub fn new(stream: TcpStream, timeout: Duration) -> Connection {
        Connection { stream: BufStream::new(stream), timeout }
    }

    /// Sends one command and reads its reply.
    ///
    /// # Errors
    /// The socket failed or closed, the answer was late or not RESP. An error *reply*
    /// (`-ERR ...`) is a successful [`Reply::Error`].
    pub async fn command(&mut self, arguments: &[&[u8]]) -> Result<Reply, ProtocolError> {
        let mut request = format!("*{}\r\n", arguments.len()).into_bytes();
        for argument in arguments {
            request.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
            request.extend_from_slice(argument);
            request.extend_from_slice(b"\r\n");
        }
        let exchange = async {
            self.stream.write_all(&request).await?;
            self.stream.flush().await?;
            read_reply(&mut self.stream, 0).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ProtocolError::Timeout(self.timeout))?
    }
}

fn read_reply(
    stream: &mut BufStream<TcpStream>,
    depth: usize,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Reply, ProtocolError>> + Send + '_>> {
    Box::pin(async move {
        if depth > MAXIMUM_DEPTH {
            return Err(ProtocolError::Malformed(format!("arrays nested deeper than {MAXIMUM_DEPTH}")));
        }
        let line = read_line(stream).await?;
        let (kind, rest) =
            line.split_at_checked(1).ok_or_else(|| ProtocolError::Malformed("empty line".into()))?;
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| ProtocolError::Malformed(format!("`{rest}` is not a length or integer")))
        };
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let Ok(length) = usize::try_from(number()?) else { return Ok(Reply::Bulk(None)) };
                if length > MAXIMUM_REPLY_BYTES {
                    return Err(ProtocolError::Malformed(format!("a bulk string of {length} bytes")));
                }
                let mut bytes = vec![0; length + 2];
                stream.read_exact(&mut bytes).await?;
                if !bytes.ends_with(b"\r\n") {
                    return Err(ProtocolError::Malformed("a bulk string without its CRLF".into()));
                }
                bytes.truncate(length);
                Ok(Reply::Bulk(Some(bytes)))
            }
            "*" => {
                let Ok(count) = usize::try_from(number()?) else { return Ok(Reply::Array(None)) };
                let mut items = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    items.push(read_reply(stream, depth + 1).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(ProtocolError::Malformed(format!("unknown reply type `{other}`"))),
        }
    })
}

async fn read_line(stream: &mut BufStream<TcpStream>) -> Result<String, ProtocolError> {
    let mut line = Vec::new();
    let read = (&mut *stream).take(MAXIMUM_REPLY_BYTES as u64).read_until(b'\n', &mut line).await?;
    if read == 0 {
        return Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(ProtocolError::Malformed("a line without CRLF".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| ProtocolError::Malformed("a line that is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers every connection with `answer`, whatever it is sent.
    async fn answering(answer: &'static [u8]) -> Connection {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0_u8; 256];
            let _ = socket.read(&mut request).await;
            socket.write_all(answer).await.expect("answer");
        });
        let stream = TcpStream::connect(address).await.expect("connect");
        Connection::new(stream, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn reads_every_reply_type() {
        let mut connection =
            answering(b"*5\r\n+OK\r\n-ERR no\r\n:42\r\n$5\r\nhello\r\n*2\r\n$-1\r\n*-1\r\n").await;
        let reply = connection.command(&[b"PING"]).await.expect("a reply");
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Status("OK".into()),
                Reply::Error("ERR no".into()),
                Reply::Integer(42),
                Reply::Bulk(Some(b"hello".to_vec())),
                Reply::Array(Some(vec![Reply::Bulk(None), Reply::Array(None)])),
            ]))
        );
    }

    #[tokio::test]
    async fn a_closed_connection_is_recognised() {
        let mut connection = answering(b"").await;
        let error = connection.command(&[b"SHUTDOWN", b"NOSAVE"]).await.expect_err("closed");
        assert!(error.is_closed(), "{error:?}");
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let mut connection = answering(b"HTTP/1.1 400 Bad Request\r\n").await;
        let error = connection.command(&[b"PING"]).await.expect_err("not RESP");
        assert!(matches!(error, ProtocolError::Malformed(_)), "{error:?}");
    }
}
