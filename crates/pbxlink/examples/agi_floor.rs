//! The floor for bench/fastagi.sh: a bare tokio server doing a 3-command FastAGI session's
//! TCP work (accept, read the environment up to its blank line, three command/reply round
//! trips, close) with no AGI parsing, routing, limits or metrics. pbxlink's sessions/s as a
//! share of this one's is what the kernel and tokio leave to improve.
//!
//! `cargo run --release -p pbxlink --example agi_floor -- 127.0.0.1:PORT` (prints "listening").

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const COMMANDS: [&[u8]; 3] = [
    b"SET VARIABLE PBXLINK_A 1\n",
    b"SET VARIABLE PBXLINK_B 2\n",
    b"SET VARIABLE PBXLINK_C 3\n",
];

/// Reads until `buf[..len]` ends with `end`; false when the peer closed first.
async fn read_until(stream: &mut TcpStream, buf: &mut [u8], end: &[u8]) -> bool {
    let mut len = 0;
    while !buf[..len].ends_with(end) {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => len = (len + n) % buf.len(),
        }
    }
    true
}

async fn session(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0; 4096];
    if !read_until(&mut stream, &mut buf, b"\n\n").await {
        return;
    }
    for command in COMMANDS {
        if stream.write_all(command).await.is_err()
            || !read_until(&mut stream, &mut buf, b"\n").await
        {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4574".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {addr}");
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(session(stream));
        }
    }
}
