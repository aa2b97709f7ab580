//! Which server does not accept a TCP connection: how the readiness wait names the node that
//! pgpool only calls "a backend".

use std::time::Duration;

use crate::config::{Backend, Role};

/// The first backend, primary first, that does not accept a TCP connection within a second.
pub async fn unreachable(backends: &[Backend]) -> Option<String> {
    // All at once under one second, so the diagnosis adds at most 1 s to the deadline.
    let mut set = tokio::task::JoinSet::new();
    for (i, b) in backends.iter().enumerate() {
        let (host, port) = (b.host.clone(), b.port);
        set.spawn(async move {
            let connect = tokio::net::TcpStream::connect((host.as_str(), port));
            let why = match tokio::time::timeout(Duration::from_secs(1), connect).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no answer within 1s".to_string()),
            };
            (i, why)
        });
    }
    let mut down: Vec<(usize, String)> = Vec::new();
    while let Some(Ok((i, why))) = set.join_next().await {
        down.extend(why.map(|w| (i, w)));
    }
    // The primary first: it is the one that blocks readiness.
    let (i, why) = down.into_iter().min_by_key(|(i, _)| *i)?;
    let b = &backends[i];
    let role = if b.role == Role::Primary {
        "primary"
    } else {
        "follower"
    };
    Some(format!(
        "the {role} {} ({}:{}) is unreachable: {why}",
        b.var, b.host, b.port
    ))
}
