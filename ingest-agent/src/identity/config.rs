//! The `[identity]` section of the agent's configuration, and the CIDR prefix type its labels
//! are keyed by.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Where pod and node metadata come from.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KubernetesSource {
    /// The in-cluster service account when the agent runs in a pod, else no Kubernetes.
    #[default]
    Auto,
    /// The in-cluster service account, else the kubeconfig (`KUBECONFIG`, `~/.kube/config`);
    /// failing both is a start-up error.
    Infer,
    /// An API server at this URL, without credentials: `http://127.0.0.1:8001` (`kubectl proxy`)
    /// or a test fixture.
    Url(String),
    /// A plain host: identity is node plus process.
    Disabled,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// This node's name as Kubernetes knows it; empty takes the host name.
    pub node_name: String,
    /// `"auto"`, `"infer"`, `"disabled"` or `{ url = "http://…" }`.
    pub kubernetes: KubernetesSource,
    /// Labels of external address ranges, longest prefix first: `"10.20.0.0/16" = "office"`.
    pub cidr_labels: BTreeMap<Cidr, String>,
    /// The cgroup2 mount; unset finds it in /proc/self/mounts.
    pub cgroup_root: Option<PathBuf>,
    /// A cgroup id not in the cache rescans the hierarchy at most this often.
    pub cgroup_rescan_interval_ms: u64,
    /// Bound of the cgroup id → path cache.
    pub max_cgroups: usize,
    /// Bound of the address → DNS name cache; when full, the entry closest to expiry goes.
    pub dns_capacity: usize,
    /// Answers are remembered at least this long, whatever their TTL: a client connects after
    /// the answer arrives and flows are named when they are exported, not at connect.
    pub dns_min_ttl_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            node_name: String::new(),
            kubernetes: KubernetesSource::default(),
            cidr_labels: BTreeMap::new(),
            cgroup_root: None,
            cgroup_rescan_interval_ms: 1_000,
            max_cgroups: 65_536,
            dns_capacity: 65_536,
            dns_min_ttl_secs: 30,
        }
    }
}

impl IdentityConfig {
    /// Checks every key; the error names the first bad one and why.
    pub fn validate(&self) -> Result<()> {
        let err = |key: &str, why: String| Err(Error::Config(format!("identity.{key}: {why}")));
        if let KubernetesSource::Url(url) = &self.kubernetes {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return err(
                    "kubernetes.url",
                    format!("{url:?} is not an http:// or https:// URL"),
                );
            }
        }
        for (cidr, label) in &self.cidr_labels {
            if label.trim().is_empty() {
                return err("cidr_labels", format!("{cidr} has an empty label"));
            }
        }
        if self.max_cgroups == 0 {
            return err("max_cgroups", "must be greater than 0".into());
        }
        if self.dns_capacity == 0 {
            return err("dns_capacity", "must be greater than 0".into());
        }
        if let Some(root) = &self.cgroup_root {
            if root.as_os_str().is_empty() {
                return err("cgroup_root", "is empty; leave it unset to detect".into());
            }
        }
        Ok(())
    }
}

/// An address prefix, `10.0.0.0/8` or `fd00::/8`; host bits are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix_len <= max).then(|| Cidr {
            network: mask(addr, prefix_len),
            prefix_len,
        })
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix_len) == self.network
    }
}

fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::from((bits & kept).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::from((bits & kept).to_be_bytes())
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or address/prefix-length"))?;
        let len = match len {
            Some(len) => len
                .parse::<u8>()
                .map_err(|_| format!("{text:?} has a bad prefix length"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(addr, len).ok_or_else(|| format!("{text:?}: prefix length too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("valid prefix")
    }

    #[test]
    fn prefixes_parse_mask_and_match() {
        let ten = cidr("10.1.2.3/8");
        assert_eq!(ten.to_string(), "10.0.0.0/8");
        assert!(ten.contains("10.200.0.1".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(!ten.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert_eq!(cidr("192.0.2.7").prefix_len(), 32);
        assert!(cidr("0.0.0.0/0").contains("203.0.113.9".parse().unwrap()));
        let v6 = cidr("fd00:1::/32");
        assert!(v6.contains("fd00:1:ffff::1".parse().unwrap()));
        assert!(!v6.contains("fd00:2::1".parse().unwrap()));
        assert_eq!(cidr("::/0").prefix_len(), 0);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AgentFile {
        identity: IdentityConfig,
    }

    #[test]
    fn reads_the_toml_section() {
        let file: AgentFile = toml::from_str(
            r#"
            [identity]
            node_name = "node-a"
            kubernetes = { url = "http://127.0.0.1:8001" }
            cgroup_root = "/sys/fs/cgroup"
            dns_min_ttl_secs = 5
            [identity.cidr_labels]
            "10.20.0.0/16" = "office"
            "2001:db8::/32" = "lab"
            "#,
        )
        .expect("parses");
        let config = file.identity;
        assert_eq!(config.node_name, "node-a");
        assert_eq!(
            config.kubernetes,
            KubernetesSource::Url("http://127.0.0.1:8001".into())
        );
        assert_eq!(config.cidr_labels[&cidr("10.20.0.0/16")], "office");
        assert_eq!(config.dns_min_ttl_secs, 5);
        assert_eq!(config.max_cgroups, IdentityConfig::default().max_cgroups);
        config.validate().expect("valid");

        let auto: AgentFile = toml::from_str("[identity]\nkubernetes = \"disabled\"\n").unwrap();
        assert_eq!(auto.identity.kubernetes, KubernetesSource::Disabled);
        let empty: AgentFile = toml::from_str("[identity]\n").unwrap();
        assert_eq!(empty.identity, IdentityConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<AgentFile>("[identity]\nnode = \"a\"\n").is_err());
        assert!(toml::from_str::<AgentFile>("[identity]\nkubernetes = \"maybe\"\n").is_err());
        assert!(
            toml::from_str::<AgentFile>("[identity.cidr_labels]\n\"10.0.0.0/40\" = \"x\"\n")
                .is_err()
        );
        let bad_url = IdentityConfig {
            kubernetes: KubernetesSource::Url("127.0.0.1:6443".into()),
            ..IdentityConfig::default()
        };
        let message = bad_url.validate().unwrap_err().to_string();
        assert!(message.contains("identity.kubernetes.url"), "{message}");
        let no_dns = IdentityConfig {
            dns_capacity: 0,
            ..IdentityConfig::default()
        };
        assert!(no_dns
            .validate()
            .unwrap_err()
            .to_string()
            .contains("dns_capacity"));
        let mut blank_label = IdentityConfig::default();
        blank_label
            .cidr_labels
            .insert(cidr("10.0.0.0/8"), " ".into());
        assert!(blank_label.validate().is_err());
    }
}
