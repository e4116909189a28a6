//! Interception settings: the flags and environment of `airlock serve`,
//! the `[intercept]` table of the TOML file, and what they resolve to
//! (checked once, at start-up, so a bad value stops the daemon with a
//! message naming it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{cgroup, nft};

pub const DEFAULT_TRANSPARENT_PORT: u16 = 10256;
pub const DEFAULT_INTERCEPT_PORTS: &[u16] = &[443];
pub const DEFAULT_AGENTS_CGROUP: &str = "airlock.slice";
pub const DEFAULT_GATEWAY_CGROUP: &str = "airlock-gateway";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/airlock";
/// Whether and how the daemon intercepts agents transparently.
///
/// The default is `auto`: a host that can run eBPF gets transparent
/// interception without asking. Tests that do not exercise it say `off`
/// (tests/support sets it), so parallel test daemons do not share the
/// host's `airlock.slice` and pins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TransparentMode {
    /// The explicit proxy only.
    Off,
    /// eBPF interception when it loads, else the nftables fallback, else
    /// the explicit proxy only.
    #[default]
    Auto,
    /// eBPF interception or the daemon does not start.
    Ebpf,
    /// The nftables fallback (even where eBPF would load) or the daemon
    /// does not start.
    Nftables,
}

impl TransparentMode {
    pub fn name(self) -> &'static str {
        match self {
            TransparentMode::Off => "off",
            TransparentMode::Auto => "auto",
            TransparentMode::Ebpf => "ebpf",
            TransparentMode::Nftables => "nftables",
        }
    }
}

/// Command-line flags and environment variables of `airlock serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InterceptArgs {
    /// Transparent interception of agents' cgroups: off, auto (eBPF when it
    /// loads, else nftables, else the explicit proxy only), ebpf or
    /// nftables (required).
    #[arg(long, env = "AIRLOCK_TRANSPARENT", value_enum)]
    pub transparent: Option<TransparentMode>,
    /// Refuse to start unless eBPF interception loads (same as --transparent ebpf).
    #[arg(long)]
    pub require_ebpf: bool,
    /// Port of the transparent listener on 127.0.0.1 and [::1] (default 10256; 0 picks one).
    #[arg(long, env = "AIRLOCK_TRANSPARENT_PORT", value_name = "PORT")]
    pub transparent_port: Option<u16>,
    /// Destination TCP ports intercepted for agents, comma-separated (default 443).
    #[arg(long, env = "AIRLOCK_INTERCEPT_PORTS", value_name = "PORTS")]
    pub intercept_ports: Option<String>,
    /// The agents' parent cgroup, relative to the cgroup2 mount (default airlock.slice).
    #[arg(long, env = "AIRLOCK_AGENTS_CGROUP", value_name = "PATH")]
    pub agents_cgroup: Option<String>,
    /// The gateway's own cgroup, relative to the cgroup2 mount (default airlock-gateway).
    #[arg(long, env = "AIRLOCK_GATEWAY_CGROUP", value_name = "PATH")]
    pub gateway_cgroup: Option<String>,
    /// Where eBPF maps and links are pinned (default /sys/fs/bpf/airlock).
    #[arg(long, env = "AIRLOCK_BPF_PIN_DIR", value_name = "DIR")]
    pub bpf_pin_dir: Option<PathBuf>,
    /// The nftables fallback's table, `inet NAME` (default airlock).
    #[arg(long, env = "AIRLOCK_NFT_TABLE", value_name = "NAME")]
    pub nft_table: Option<String>,
}

/// The `[intercept]` table of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIntercept {
    mode: Option<TransparentMode>,
    require_ebpf: Option<bool>,
    port: Option<u16>,
    ports: Option<Vec<u16>>,
    agents_cgroup: Option<String>,
    gateway_cgroup: Option<String>,
    pin_dir: Option<PathBuf>,
    nft_table: Option<String>,
}

/// Resolved interception settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterceptSettings {
    pub mode: TransparentMode,
    pub port: u16,
    pub ports: Vec<u16>,
    pub agents_cgroup: String,
    pub gateway_cgroup: String,
    pub pin_dir: PathBuf,
    #[serde(default = "default_nft_table")]
    pub nft_table: String,
}

fn default_nft_table() -> String {
    nft::DEFAULT_TABLE.into()
}

impl Default for InterceptSettings {
    fn default() -> Self {
        InterceptSettings {
            mode: TransparentMode::Auto,
            port: DEFAULT_TRANSPARENT_PORT,
            ports: DEFAULT_INTERCEPT_PORTS.to_vec(),
            agents_cgroup: DEFAULT_AGENTS_CGROUP.into(),
            gateway_cgroup: DEFAULT_GATEWAY_CGROUP.into(),
            pin_dir: DEFAULT_PIN_DIR.into(),
            nft_table: default_nft_table(),
        }
    }
}

/// Why the interception settings cannot be used; each message names the
/// value and what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("intercepted port {0:?} is not a TCP port (1-65535); give a list like 443,8443")]
    BadPort(String),
    #[error(
        "intercepted ports must be 1 to {} ports from 1-65535",
        gateway_common::MAX_PORTS
    )]
    PortCount,
    #[error(
        "{what} {path:?} must be a cgroup path like airlock.slice, made of letters, digits \
         and -_.@: (no '..' or empty parts)"
    )]
    BadCgroup { what: &'static str, path: String },
    #[error(
        "the gateway cgroup {gateway:?} must be outside the agents' cgroup {agents:?} (and not \
         contain it)"
    )]
    NestedCgroups { gateway: String, agents: String },
    #[error("the BPF pin directory must be absolute, got {}", .0.display())]
    RelativePinDir(PathBuf),
    #[error(
        "the nft table name {0:?} must start with a letter and hold only letters, digits, _ and \
         - (at most 64)"
    )]
    BadNftTable(String),
    #[error("the transparent listener's port {0} cannot also be an intercepted port")]
    ListenerIntercepted(u16),
}

fn valid_cgroup(what: &'static str, path: &str) -> Result<String, SettingsError> {
    let rel = cgroup::normalize(path);
    let ok = !rel.is_empty()
        && rel.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
        });
    if ok {
        Ok(rel)
    } else {
        Err(SettingsError::BadCgroup {
            what,
            path: path.to_owned(),
        })
    }
}

impl InterceptSettings {
    pub fn resolve(a: InterceptArgs, f: FileIntercept) -> Result<InterceptSettings, SettingsError> {
        let d = InterceptSettings::default();
        let mode = if a.require_ebpf || f.require_ebpf == Some(true) {
            TransparentMode::Ebpf
        } else {
            a.transparent.or(f.mode).unwrap_or(d.mode)
        };
        let ports = match a.intercept_ports {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s.parse::<u16>() {
                    Ok(p) if p > 0 => Ok(p),
                    _ => Err(SettingsError::BadPort(s.to_owned())),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => f.ports.unwrap_or(d.ports),
        };
        if ports.is_empty()
            || ports.len() > gateway_common::MAX_PORTS as usize
            || ports.contains(&0)
        {
            return Err(SettingsError::PortCount);
        }
        let agents_cgroup = valid_cgroup(
            "agents' cgroup",
            &a.agents_cgroup
                .or(f.agents_cgroup)
                .unwrap_or(d.agents_cgroup),
        )?;
        let gateway_cgroup = valid_cgroup(
            "gateway cgroup",
            &a.gateway_cgroup
                .or(f.gateway_cgroup)
                .unwrap_or(d.gateway_cgroup),
        )?;
        if gateway_cgroup == agents_cgroup
            || cgroup::is_under(&gateway_cgroup, &agents_cgroup)
            || cgroup::is_under(&agents_cgroup, &gateway_cgroup)
        {
            return Err(SettingsError::NestedCgroups {
                gateway: gateway_cgroup,
                agents: agents_cgroup,
            });
        }
        let pin_dir = a.bpf_pin_dir.or(f.pin_dir).unwrap_or(d.pin_dir);
        if !pin_dir.is_absolute() {
            return Err(SettingsError::RelativePinDir(pin_dir));
        }
        let nft_table = a.nft_table.or(f.nft_table).unwrap_or(d.nft_table);
        if !nft::valid_table(&nft_table) {
            return Err(SettingsError::BadNftTable(nft_table));
        }
        let port = a.transparent_port.or(f.port).unwrap_or(d.port);
        if port != 0 && ports.contains(&port) {
            return Err(SettingsError::ListenerIntercepted(port));
        }
        Ok(InterceptSettings {
            mode,
            port,
            ports,
            agents_cgroup,
            gateway_cgroup,
            pin_dir,
            nft_table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_resolve_and_refuse_bad_input() {
        let s =
            InterceptSettings::resolve(InterceptArgs::default(), FileIntercept::default()).unwrap();
        assert_eq!(s, InterceptSettings::default());
        let s = InterceptSettings::resolve(
            InterceptArgs {
                transparent: Some(TransparentMode::Auto),
                intercept_ports: Some("443, 18443".into()),
                agents_cgroup: Some("/test.slice/".into()),
                ..Default::default()
            },
            FileIntercept::default(),
        )
        .unwrap();
        assert_eq!(s.ports, vec![443, 18443]);
        assert_eq!(s.agents_cgroup, "test.slice");
        assert_eq!(s.mode, TransparentMode::Auto);
        for bad in [
            InterceptArgs {
                intercept_ports: Some("443,x".into()),
                ..Default::default()
            },
            InterceptArgs {
                intercept_ports: Some("0".into()),
                ..Default::default()
            },
            InterceptArgs {
                agents_cgroup: Some("a/../b".into()),
                ..Default::default()
            },
            InterceptArgs {
                gateway_cgroup: Some("airlock.slice/gw".into()),
                ..Default::default()
            },
            InterceptArgs {
                transparent_port: Some(443),
                ..Default::default()
            },
            InterceptArgs {
                bpf_pin_dir: Some("rel".into()),
                ..Default::default()
            },
            InterceptArgs {
                nft_table: Some("air lock".into()),
                ..Default::default()
            },
        ] {
            assert!(
                InterceptSettings::resolve(bad.clone(), FileIntercept::default()).is_err(),
                "{bad:?}"
            );
        }
        let s = InterceptSettings::resolve(
            InterceptArgs {
                require_ebpf: true,
                ..Default::default()
            },
            FileIntercept::default(),
        )
        .unwrap();
        assert_eq!(s.mode, TransparentMode::Ebpf);
    }

    /// The operator reads these; they say which value and what it should be.
    #[test]
    fn refusals_name_the_value() {
        let err = |a: InterceptArgs| {
            InterceptSettings::resolve(a, FileIntercept::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(InterceptArgs {
                intercept_ports: Some("443,x".into()),
                ..Default::default()
            }),
            "intercepted port \"x\" is not a TCP port (1-65535); give a list like 443,8443"
        );
        assert_eq!(
            err(InterceptArgs {
                agents_cgroup: Some("a/../b".into()),
                ..Default::default()
            }),
            "agents' cgroup \"a/../b\" must be a cgroup path like airlock.slice, made of letters, \
             digits and -_.@: (no '..' or empty parts)"
        );
        assert_eq!(
            err(InterceptArgs {
                gateway_cgroup: Some("airlock.slice/gw".into()),
                ..Default::default()
            }),
            "the gateway cgroup \"airlock.slice/gw\" must be outside the agents' cgroup \
             \"airlock.slice\" (and not contain it)"
        );
        assert_eq!(
            err(InterceptArgs {
                nft_table: Some("air lock".into()),
                ..Default::default()
            }),
            "the nft table name \"air lock\" must start with a letter and hold only letters, \
             digits, _ and - (at most 64)"
        );
        assert_eq!(
            err(InterceptArgs {
                transparent_port: Some(443),
                ..Default::default()
            }),
            "the transparent listener's port 443 cannot also be an intercepted port"
        );
    }
}
