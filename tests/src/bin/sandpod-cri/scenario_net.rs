//! The `net` scenario: two pods on the CNI bridge, each serving a page with busybox httpd. The
//! pod IP from the CNI result (PodSandboxStatus) is the address of the container's eth0; the host
//! (this driver, in the host's namespace) fetches each pod's page from its IP; each pod fetches
//! the other's (with busybox nc: busybox-static's wget crashes in getaddrinfo here, under runc
//! too). Then both pods are removed.
#![allow(unused_imports)] // one prelude for the parts of the tool
use super::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The page a pod serves: `hello-from-<pod name>`.
fn page(name: &str) -> String {
    format!("hello-from-{name}")
}

/// One HTTP/1.0 GET of `/` from `ip:80`: the body's last line.
fn http_get(ip: &str) -> Result<String> {
    let addr: SocketAddr = format!("{ip}:80").parse().context("the pod IP")?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut resp = Vec::new();
    s.take(1 << 20).read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    Ok(text.lines().last().unwrap_or_default().trim().to_owned())
}

/// Retries [`http_get`] for up to `secs` (the server may still be starting).
async fn http_get_retrying(ip: &str, want: &str, secs: u64) -> Result<String> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let ipc = ip.to_owned();
        let got = tokio::task::spawn_blocking(move || http_get(&ipc)).await?;
        match got {
            Ok(body) if body == want => return Ok(body),
            other if Instant::now() >= end => {
                return Err(anyhow!("GET http://{ip}/ for {secs} s: last {other:?}"))
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

pub(crate) async fn scenario_net(cri: &Cri, r: &mut Report) {
    let names = ["sp-net-a", "sp-net-b"];
    // (name, pod id, container id, pod ip) of each pod that runs.
    let mut pods: Vec<(String, String)> = Vec::new();
    let mut running: Vec<(String, String, String)> = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let pcfg = cri.pod_config(name);
        let pod = match cri.run_pod(&pcfg).await {
            Ok(p) => p,
            Err(s) => {
                errors.push(format!("{name}: RunPodSandbox: {}", status_text(&s)));
                continue;
            }
        };
        pods.push((name.to_owned(), pod.clone()));
        let script = format!(
            "mkdir -p /www && echo {} >/www/index.html && exec httpd -f -p 80 -h /www",
            page(name)
        );
        let ccfg = cri.container_config("web", &["sh", "-c", &script], None);
        let c = match cri.create_and_start(&pod, &pcfg, &ccfg).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{name}: {e:#}"));
                continue;
            }
        };
        let ip = match cri.pod_status(&pod).await {
            Ok(st) => st.network.map(|n| n.ip).unwrap_or_default(),
            Err(s) => {
                errors.push(format!("{name}: PodSandboxStatus: {}", status_text(&s)));
                continue;
            }
        };
        running.push((name.to_owned(), c, ip));
    }
    r.check(
        "net-two-pods-with-ips",
        (|| {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            ensure!(
                running.len() == 2 && running.iter().all(|(_, _, ip)| !ip.is_empty()),
                "running {running:?}"
            );
            Ok(running
                .iter()
                .map(|(n, _, ip)| format!("{n} {ip}"))
                .collect::<Vec<_>>()
                .join(", "))
        })(),
    );
    if running.len() == 2 {
        r.check(
            "net-pod-ip-is-eth0-address",
            async {
                let mut seen = Vec::new();
                for (name, c, ip) in &running {
                    let out = cri.sh(c, "ip -o -4 addr show eth0").await?;
                    ensure!(
                        out.contains(&format!(" inet {ip}/")),
                        "{name}: pod IP {ip}, eth0: {out:?}"
                    );
                    seen.push(format!("{name}: eth0 has {ip}"));
                }
                Ok(seen.join(", "))
            }
            .await,
        );
        r.check(
            "net-host-to-pod",
            async {
                let mut seen = Vec::new();
                for (name, _, ip) in &running {
                    let body = http_get_retrying(ip, &page(name), 60).await?;
                    seen.push(format!("{ip}: {body}"));
                }
                Ok(seen.join(", "))
            }
            .await,
        );
        r.check(
            "net-pod-to-pod",
            async {
                let (a, b) = (&running[0], &running[1]);
                let mut seen = Vec::new();
                for (from, to) in [(a, b), (b, a)] {
                    let got = cri
                        .sh(
                            &from.1,
                            &format!(
                                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {} 80 | tail -n 1",
                                to.2
                            ),
                        )
                        .await?;
                    ensure!(
                        got.trim() == page(&to.0),
                        "{} fetched {:?} from {}",
                        from.0,
                        got,
                        to.2
                    );
                    seen.push(format!("{} -> {}: {}", from.0, to.0, got.trim()));
                }
                Ok(seen.join(", "))
            }
            .await,
        );
    }
    let mut errors = Vec::new();
    for (name, pod) in &pods {
        if let Err(e) = cri.teardown(pod, name).await {
            errors.push(format!("{name}: {e:#}"));
        }
    }
    r.check(
        "net-pods-removed",
        async {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            nothing_listed(cri).await?;
            Ok(format!("{} pods stopped and removed", pods.len()))
        }
        .await,
    );
}
