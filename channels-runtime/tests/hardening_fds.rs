//! A server out of file descriptors (a connection flood) answers a new
//! client 503 at once instead of leaving it to hang in the listen queue
//! until its own timeout. Alone in its binary: it lowers the process's
//! open-file limit.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The highest descriptor open.
fn highest_open_file() -> u64 {
    let listed = std::fs::read_dir("/proc/self/fd").unwrap();
    listed.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).max().unwrap()
}

fn set_open_file_limit(soft: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let before = limit.rlim_cur;
        limit.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        before
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_a_new_client_gets_503_at_once() {
    let s = support::server().await;
    // Some clients, to make it a server with connections.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(s.v2().await);
    }
    // Every descriptor below a lowered limit taken (the limit is on
    // descriptor numbers), then one given back for the client to connect
    // with: the server has none to accept it with.
    let before = set_open_file_limit(highest_open_file() + 32);
    let mut fillers = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        fillers.push(file);
    }
    fillers.pop();
    let answered = async {
        let mut probe = TcpStream::connect(s.addr).await.unwrap();
        let request =
            format!("GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.addr);
        let _ = probe.write_all(request.as_bytes()).await;
        let mut response = Vec::new();
        let _ = probe.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    };
    let answered = tokio::time::timeout(Duration::from_secs(3), answered).await;
    drop(fillers);
    set_open_file_limit(before);
    let response = answered.expect("a client was left hanging while the server had no descriptor to accept it");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.to_ascii_lowercase().contains("retry-after"), "{response}");
    // With descriptors back, the server accepts again.
    let mut c = s.v2().await;
    assert_eq!(c.join("1", "echo:after").await[4]["status"], "ok");
    drop(clients);
}
