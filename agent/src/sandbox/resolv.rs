//! /etc/resolv.conf from CreateSandbox's DNS settings.

/// The resolv.conf text for these servers and search domains; `None` when both are empty
/// (the file is then left alone).
pub fn render(servers: &[String], search: &[String]) -> Result<Option<String>, String> {
    if servers.is_empty() && search.is_empty() {
        return Ok(None);
    }
    let mut text = String::from("# Written by sandpod-agent\n");
    for s in servers {
        if s.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("DNS server {s:?} is not an IP address"));
        }
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        if let Some(bad) = search
            .iter()
            .find(|d| d.is_empty() || d.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!("DNS search domain {bad:?} is not a domain name"));
        }
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_servers_and_search() {
        let text = render(
            &["10.0.0.2".into(), "2001:db8::1".into()],
            &["svc.cluster.local".into(), "cluster.local".into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            text,
            "# Written by sandpod-agent\nnameserver 10.0.0.2\nnameserver 2001:db8::1\n\
             search svc.cluster.local cluster.local\n"
        );
    }

    #[test]
    fn nothing_to_write_without_settings() {
        assert_eq!(render(&[], &[]), Ok(None));
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(render(&["dns.example".into()], &[]).is_err());
        assert!(render(&[], &["a b".into()]).is_err());
        assert!(render(&[], &["a\nnameserver 1.2.3.4".into()]).is_err());
    }
}
