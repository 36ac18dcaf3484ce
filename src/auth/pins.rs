//! Which pack decides for whom: the operator pins a pack for everyone (`--pin-pack`) or for peers by user or group
//! (`--pin-pack-for user:NAME=PACK`, `group:NAME=PACK`), so a client cannot pick a weaker pack by naming it.
//!
//! Names are resolved once, at start. For a peer, the first `--pin-pack-for` entry that matches it (its uid, its
//! primary group or a supplementary group) wins, in the order given; then `--pin-pack`; with neither, the request
//! chooses among the loaded packs as the reference lets it.

use nix::unistd::{Group, User};

use super::Peer;
use crate::engine::{Context, OtherPack};
use crate::policy::PolicySet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PinError {
    #[error("--pin-pack-for {0:?}: expected user:NAME=PACK or group:NAME=PACK")]
    Syntax(String),
    #[error("--pin-pack-for {0:?}: no such user")]
    UnknownUser(String),
    #[error("--pin-pack-for {0:?}: no such group")]
    UnknownGroup(String),
    #[error("{flag} names policy pack {pack:?}, which is not loaded (loaded packs: {known})")]
    UnknownPack { flag: String, pack: String, known: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    User(u32),
    Group(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pin {
    who: Who,
    pack: String,
    /// As given on the command line, for messages.
    spec: String,
}

/// The operator's pack pins, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackPins {
    global: Option<String>,
    pins: Vec<Pin>,
    other_pack: OtherPack,
}

impl PackPins {
    /// Resolves `user:NAME=PACK` and `group:NAME=PACK` (names or numeric ids).
    pub fn resolve(global: Option<&str>, per_peer: &[String], other_pack: OtherPack) -> Result<Self, PinError> {
        let pins = per_peer
            .iter()
            .map(|spec| {
                let syntax = || PinError::Syntax(spec.clone());
                let (who, pack) = spec.split_once('=').ok_or_else(syntax)?;
                let (kind, name) = who.split_once(':').ok_or_else(syntax)?;
                if name.is_empty() || pack.is_empty() {
                    return Err(syntax());
                }
                let who = match kind {
                    "user" => Who::User(match name.parse::<u32>() {
                        Ok(uid) => uid,
                        Err(_) => User::from_name(name)
                            .ok()
                            .flatten()
                            .map(|user| user.uid.as_raw())
                            .ok_or_else(|| PinError::UnknownUser(spec.clone()))?,
                    }),
                    "group" => Who::Group(match name.parse::<u32>() {
                        Ok(gid) => gid,
                        Err(_) => Group::from_name(name)
                            .ok()
                            .flatten()
                            .map(|group| group.gid.as_raw())
                            .ok_or_else(|| PinError::UnknownGroup(spec.clone()))?,
                    }),
                    _ => return Err(syntax()),
                };
                Ok(Pin {
                    who,
                    pack: pack.to_owned(),
                    spec: spec.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            global: global.map(str::to_owned),
            pins,
            other_pack,
        })
    }

    /// Every pinned pack must be loaded: at start, and again for a policy that a reload would put in force.
    pub fn check(&self, policies: &PolicySet) -> Result<(), PinError> {
        let flagged = self
            .global
            .iter()
            .map(|pack| (format!("--pin-pack {pack}"), pack))
            .chain(
                self.pins
                    .iter()
                    .map(|pin| (format!("--pin-pack-for {}", pin.spec), &pin.pack)),
            );
        for (flag, pack) in flagged {
            if policies.pack(pack).is_none() {
                return Err(PinError::UnknownPack {
                    flag,
                    pack: pack.clone(),
                    known: policies.packs().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.pins.is_empty()
    }

    /// Whether telling a peer's pin needs its supplementary groups.
    pub fn needs_groups(&self) -> bool {
        self.pins.iter().any(|pin| matches!(pin.who, Who::Group(_)))
    }

    /// The pack pinned for `peer`, if any.
    pub fn pack_for(&self, peer: &Peer) -> Option<&str> {
        self.pins
            .iter()
            .find(|pin| match pin.who {
                Who::User(uid) => peer.uid == uid,
                Who::Group(gid) => peer.gid == gid || peer.groups.contains(&gid),
            })
            .map(|pin| pin.pack.as_str())
            .or(self.global.as_deref())
    }

    /// The pack part of the engine's context for `peer`.
    pub fn context_for(&self, peer: &Peer) -> Context<'_> {
        Context {
            pinned_pack: self.pack_for(peer),
            other_pack: self.other_pack,
            ..Context::default()
        }
    }

    /// For logs: what is pinned.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.pins.iter().map(|pin| pin.spec.clone()).collect();
        if let Some(global) = &self.global {
            parts.push(format!("everyone else={global}"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyConfig;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn the_first_matching_pin_wins_then_the_global_one() {
        let pins = PackPins::resolve(
            Some("cavra-ai-agent-baseline"),
            &["user:1000=cavra-hipaa".into(), "group:50=cavra-terraform-prod".into()],
            OtherPack::Refuse,
        )
        .unwrap();
        assert!(pins.needs_groups());
        assert_eq!(pins.pack_for(&peer(1000, 50, &[])), Some("cavra-hipaa"));
        assert_eq!(pins.pack_for(&peer(7, 50, &[])), Some("cavra-terraform-prod"));
        assert_eq!(pins.pack_for(&peer(7, 8, &[9, 50])), Some("cavra-terraform-prod"));
        assert_eq!(pins.pack_for(&peer(7, 8, &[])), Some("cavra-ai-agent-baseline"));
        assert_eq!(PackPins::default().pack_for(&peer(7, 8, &[])), None);
    }

    #[test]
    fn names_resolve_and_bad_pins_are_named() {
        let pins = PackPins::resolve(None, &["user:root=x".into(), "group:root=y".into()], OtherPack::Refuse).unwrap();
        assert_eq!(pins.pack_for(&peer(0, 5, &[])), Some("x"));
        assert_eq!(pins.pack_for(&peer(5, 0, &[])), Some("y"));
        for (spec, error) in [
            ("root=x", PinError::Syntax("root=x".into())),
            ("user:root", PinError::Syntax("user:root".into())),
            ("host:a=x", PinError::Syntax("host:a=x".into())),
            (
                "user:no-such-user-x=p",
                PinError::UnknownUser("user:no-such-user-x=p".into()),
            ),
            (
                "group:no-such-group-x=p",
                PinError::UnknownGroup("group:no-such-group-x=p".into()),
            ),
        ] {
            assert_eq!(PackPins::resolve(None, &[spec.into()], OtherPack::Refuse), Err(error));
        }
        let policies = PolicySet::load(&PolicyConfig::default()).unwrap();
        let unknown = PackPins::resolve(None, &["user:1=acme".into()], OtherPack::Refuse).unwrap();
        let message = unknown.check(&policies).unwrap_err().to_string();
        assert!(
            message.starts_with("--pin-pack-for user:1=acme names policy pack \"acme\", which is not loaded"),
            "{message}"
        );
        let global = PackPins::resolve(Some("acme"), &[], OtherPack::Refuse).unwrap();
        assert!(
            global
                .check(&policies)
                .unwrap_err()
                .to_string()
                .starts_with("--pin-pack acme names")
        );
    }
}
