//! `client`: the Rust Phoenix client against any server of the discuss
//! contract (`shared/conformance/CONTRACT.md`): `cargo run --release --example
//! discuss` in one terminal, then
//!
//! ```text
//! cargo run --example client -- ws://127.0.0.1:4000/socket
//! ```
//!
//! It joins `comments:42`, prints the join reply, pushes `comment:add`,
//! prints the `comments:42:new` broadcast it receives, and exits 0 (1 on any
//! failure, within 10 s).

use std::process::ExitCode;
use std::time::Duration;

use phx_channels::client::Socket;
use serde::Deserialize;
use serde_json::{json, Value};

/// The join reply of `comments:N`.
#[derive(Debug, Deserialize)]
struct Welcome {
    hey: String,
    comments: Vec<Value>,
}

/// The `comments:N:new` broadcast.
#[derive(Debug, Deserialize)]
struct NewComment {
    comment: Comment,
}

#[derive(Debug, Deserialize)]
struct Comment {
    content: String,
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let socket = Socket::connect(url);
    let (chan, welcome): (_, Welcome) = socket.channel("comments:42").join(json!({})).await?;
    println!("joined comments:42: hey {:?}, {} earlier comments", welcome.hey, welcome.comments.len());

    let mut new_comments = chan.on("comments:42:new");
    let content = format!("hello from Rust ({})", std::process::id());
    chan.push("comment:add", json!({ "content": content })).await?;
    println!("pushed comment:add {content:?}: ok");

    // Other clients may be commenting too: wait for ours. `recv` fails
    // when the channel closes, or when the stream was read too slowly and
    // dropped events (it says how many).
    loop {
        let new: NewComment = new_comments.recv().await?.decode()?;
        println!("received comments:42:new {:?}", new.comment.content);
        if new.comment.content == content {
            socket.disconnect();
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:4000/socket".to_owned());
    match tokio::time::timeout(Duration::from_secs(10), run(&url)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("client: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("client: no answer from {url} within 10 s");
            ExitCode::FAILURE
        }
    }
}
