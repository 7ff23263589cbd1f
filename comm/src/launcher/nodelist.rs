//! Charm++ nodelist files: which hosts a job runs on.
//!
//! ```text
//! # comments and blank lines are ignored
//! group main ++shell ssh
//!   host node1
//!   host node2 ++cpus 4
//! group gpus
//!   host gpu1
//! ```
//!
//! `host` lines before any `group` belong to `main`. A group's `++shell CMD` (the rest
//! of the line) is the default remote shell of its hosts; a host may set its own
//! `++shell` and `++cpus N`. Anything else is an error naming the line.

use std::path::Path;

/// One host of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Host name or address.
    pub name: String,
    /// `++cpus N`, if given.
    pub cpus: Option<u32>,
    /// The remote shell for this host, if the file sets one.
    pub shell: Option<String>,
}

/// A nodelist file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodelistError {
    /// A line that is not a group, a host, a comment or blank.
    #[error("nodelist line {line}: {why}")]
    Syntax {
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The group asked for has no hosts.
    #[error("nodelist has no hosts in group '{0}'")]
    EmptyGroup(String),
    /// The file could not be read.
    #[error("cannot read nodelist {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        why: String,
    },
}

/// The hosts of group `group` in nodelist text `text`.
///
/// # Errors
/// See [`NodelistError`].
pub fn parse(text: &str, group: &str) -> Result<Vec<Host>, NodelistError> {
    let mut current = "main".to_string();
    let mut group_shell: Option<String> = None;
    let mut hosts = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let words: Vec<&str> = content.split_whitespace().collect();
        let syntax = |why: String| NodelistError::Syntax { line, why };
        match words[0] {
            "group" => {
                let name = words.get(1).ok_or_else(|| syntax("'group' needs a name".into()))?;
                current = (*name).to_string();
                group_shell = match words.get(2) {
                    Some(&"++shell") if words.len() > 3 => Some(words[3..].join(" ")),
                    Some(other) => return Err(syntax(format!("unknown group option '{other}'"))),
                    None => None,
                };
            }
            "host" => {
                let name = words.get(1).ok_or_else(|| syntax("'host' needs a name".into()))?;
                let mut h = Host { name: (*name).to_string(), cpus: None, shell: group_shell.clone() };
                let mut k = 2;
                while k < words.len() {
                    match words[k] {
                        "++cpus" => {
                            let v = words.get(k + 1).and_then(|v| v.parse::<u32>().ok()).filter(|&n| n > 0);
                            h.cpus =
                                Some(v.ok_or_else(|| syntax("'++cpus' needs a whole number >= 1".into()))?);
                            k += 2;
                        }
                        "++shell" if k + 1 < words.len() => {
                            h.shell = Some(words[k + 1..].join(" "));
                            k = words.len();
                        }
                        other => return Err(syntax(format!("unknown host option '{other}'"))),
                    }
                }
                if current == group {
                    hosts.push(h);
                }
            }
            other => return Err(syntax(format!("expected 'group' or 'host', found '{other}'"))),
        }
    }
    if hosts.is_empty() {
        return Err(NodelistError::EmptyGroup(group.to_string()));
    }
    Ok(hosts)
}

/// The nodelist a launch without `++nodelist` or `++local` uses, as charmrun finds it:
/// `$NODELIST`, then `./nodelist`, then `~/.nodelist`, the first that exists (`var`
/// reads the environment, `exists` the file system). `None`: there is none.
pub fn discover(
    var: impl Fn(&str) -> Option<String>,
    exists: impl Fn(&Path) -> bool,
) -> Option<(std::path::PathBuf, &'static str)> {
    let candidates = [
        (var("NODELIST").filter(|v| !v.is_empty()).map(std::path::PathBuf::from), "$NODELIST"),
        (Some(std::path::PathBuf::from("nodelist")), "./nodelist"),
        (var("HOME").filter(|v| !v.is_empty()).map(|h| Path::new(&h).join(".nodelist")), "~/.nodelist"),
    ];
    candidates.into_iter().find_map(|(p, from)| p.filter(|p| exists(p)).map(|p| (p, from)))
}

/// Whether every host of `hosts` is this machine (`localhost`, a loopback address, or
/// `this_host`'s name): then a found nodelist does not make the launch remote, as
/// charmrun's `++local` rule has it.
pub fn all_local(hosts: &[Host], this_host: &str) -> bool {
    hosts.iter().all(|h| {
        let n = h.name.as_str();
        n == "localhost" || n == this_host || n.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
    })
}

/// Reads and parses a nodelist file.
///
/// # Errors
/// See [`NodelistError`].
pub fn read(path: &Path, group: &str) -> Result<Vec<Host>, NodelistError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NodelistError::Read { path: path.display().to_string(), why: e.to_string() })?;
    parse(&text, group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_nodelist_is_found_where_charmrun_looks() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let files = |fs: &'static [&'static str]| move |p: &Path| fs.iter().any(|f| Path::new(f) == p);
        let all = &["/n/list", "nodelist", "/home/u/.nodelist"];
        let found = discover(env(&[("NODELIST", "/n/list"), ("HOME", "/home/u")]), files(all));
        assert_eq!(found, Some(("/n/list".into(), "$NODELIST")));
        let found = discover(env(&[("HOME", "/home/u")]), files(all));
        assert_eq!(found, Some(("nodelist".into(), "./nodelist")));
        let found = discover(env(&[("HOME", "/home/u")]), files(&["/home/u/.nodelist"]));
        assert_eq!(found, Some(("/home/u/.nodelist".into(), "~/.nodelist")));
        // $NODELIST naming a missing file falls through to the next place.
        let found =
            discover(env(&[("NODELIST", "/gone"), ("HOME", "/home/u")]), files(&["/home/u/.nodelist"]));
        assert_eq!(found, Some(("/home/u/.nodelist".into(), "~/.nodelist")));
        assert_eq!(discover(env(&[]), files(&[])), None);
    }

    #[test]
    fn local_hosts_are_told_apart_from_others() {
        let hosts = |names: &[&str]| {
            names.iter().map(|n| Host { name: n.to_string(), cpus: None, shell: None }).collect::<Vec<_>>()
        };
        assert!(all_local(&hosts(&["localhost", "127.0.0.1", "::1", "me"]), "me"));
        assert!(!all_local(&hosts(&["localhost", "node2"]), "me"));
        assert!(!all_local(&hosts(&["10.0.0.1"]), "me"));
    }

    #[test]
    fn groups_hosts_and_options() {
        let text = "# cluster\nhost early\ngroup main ++shell ip netns exec\n  host a\n  host b ++cpus 4\n\ngroup gpus\n host g1 ++shell ssh -p 2222\n";
        let main = parse(text, "main").expect("valid");
        let netns = Some("ip netns exec".to_string());
        assert_eq!(
            main,
            vec![
                Host { name: "early".into(), cpus: None, shell: None },
                Host { name: "a".into(), cpus: None, shell: netns.clone() },
                Host { name: "b".into(), cpus: Some(4), shell: netns },
            ]
        );
        let gpus = parse(text, "gpus").expect("valid");
        assert_eq!(gpus, vec![Host { name: "g1".into(), cpus: None, shell: Some("ssh -p 2222".into()) }]);
    }

    #[test]
    fn mistakes_name_the_line() {
        assert_eq!(
            parse("group main\nhots a\n", "main"),
            Err(NodelistError::Syntax { line: 2, why: "expected 'group' or 'host', found 'hots'".into() })
        );
        assert!(parse("host a ++cpus zero\n", "main").unwrap_err().to_string().contains("line 1"));
        assert_eq!(parse("group other\nhost a\n", "main"), Err(NodelistError::EmptyGroup("main".into())));
        assert!(read(Path::new("/nonexistent/nodes"), "main")
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(text in ".{0,200}") {
            let _ = parse(&text, "main");
        }
    }
}
