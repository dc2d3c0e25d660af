//! The access model: actions, roles that bundle them, grants of actions over a namespace, and the
//! principal that holds grants.

use std::fmt;
use std::str::FromStr;

use oci::RepoName;

use crate::glob::RepoGlob;

/// One thing a principal may do to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
    /// Waive a finding or a verdict of the gate (maintainers).
    Waive,
    /// Pull an image the gate blocks (admins).
    PullBlocked,
    /// Manage users, robots and roles (admins of `**`).
    Manage,
}

impl Action {
    const ALL: [Action; 6] = [Action::Pull, Action::Push, Action::Delete, Action::Waive, Action::PullBlocked, Action::Manage];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The word the Docker token spec (and our scopes) use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Waive => "waive",
            Action::PullBlocked => "pull-blocked",
            Action::Manage => "manage",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A set of actions.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);

    pub fn of(actions: &[Action]) -> Actions {
        Actions(actions.iter().fold(0, |bits, a| bits | a.bit()))
    }

    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Comma-separated action words, `pull,push`.
    pub fn to_list(self) -> String {
        self.iter().map(Action::as_str).collect::<Vec<_>>().join(",")
    }

    /// Parses `pull,push`; `*` is every action in `all`.
    pub fn parse_list(s: &str, all: Actions) -> Result<Actions, String> {
        let mut actions = Actions::NONE;
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word == "*" {
                actions = actions.union(all);
                continue;
            }
            let a = Action::parse(word).ok_or_else(|| format!("unknown action {word:?}"))?;
            actions = actions.union(Actions::of(&[a]));
        }
        Ok(actions)
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actions({})", self.to_list())
    }
}

/// The roles of a namespace, each holding the one before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Pull.
    Reader,
    /// Pull and push.
    Writer,
    /// Also delete and waive findings.
    Maintainer,
    /// Everything, including pulling images the gate blocks; over `**`, managing access too.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Writer, Role::Maintainer, Role::Admin];

    pub fn actions(self) -> Actions {
        use Action::*;
        match self {
            Role::Reader => Actions::of(&[Pull]),
            Role::Writer => Actions::of(&[Pull, Push]),
            Role::Maintainer => Actions::of(&[Pull, Push, Delete, Waive]),
            Role::Admin => Actions::of(&[Pull, Push, Delete, Waive, PullBlocked, Manage]),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("unknown role {s:?} (expected reader, writer, maintainer or admin)")
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Actions over the repositories a glob names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub namespace: RepoGlob,
    pub actions: Actions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Robot,
    /// No credentials: holds only what is granted to `anonymous`.
    Anonymous,
}

/// Someone making requests, with everything they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub grants: Vec<Grant>,
}

/// The name grants to nobody in particular are recorded under.
pub const ANONYMOUS: &str = "anonymous";

impl Principal {
    pub fn anonymous(grants: Vec<Grant>) -> Principal {
        Principal { name: ANONYMOUS.into(), kind: PrincipalKind::Anonymous, grants }
    }

    /// Everything this principal may do to `repo`.
    pub fn actions_on(&self, repo: &RepoName) -> Actions {
        self.grants.iter().filter(|g| g.namespace.matches(repo)).fold(Actions::NONE, |all, g| all.union(g.actions))
    }

    pub fn may(&self, action: Action, repo: &RepoName) -> bool {
        self.actions_on(repo).contains(action)
    }

    /// May manage users, robots and roles: `manage` over every repository.
    pub fn is_admin(&self) -> bool {
        self.grants.iter().any(|g| g.namespace.is_everything() && g.actions.contains(Action::Manage))
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind == PrincipalKind::Anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &str, role: Role) -> Grant {
        Grant { namespace: ns.parse().unwrap(), actions: role.actions() }
    }

    #[test]
    fn grants_add_up_per_repository() {
        let p = Principal {
            name: "ann".into(),
            kind: PrincipalKind::User,
            grants: vec![grant("team/**", Role::Reader), grant("team/app", Role::Writer)],
        };
        let app: RepoName = "team/app".parse().unwrap();
        let lib: RepoName = "team/lib".parse().unwrap();
        let other: RepoName = "other/app".parse().unwrap();
        assert!(p.may(Action::Pull, &app) && p.may(Action::Push, &app) && !p.may(Action::Delete, &app));
        assert!(p.may(Action::Pull, &lib) && !p.may(Action::Push, &lib));
        assert_eq!(p.actions_on(&other), Actions::NONE);
        assert!(!p.is_admin());
        let admin = Principal { grants: vec![grant("**", Role::Admin)], ..p };
        assert!(admin.is_admin() && admin.may(Action::PullBlocked, &other));
    }

    #[test]
    fn action_lists_round_trip() {
        let all = Actions::of(&[Action::Pull, Action::Push]);
        assert_eq!(Actions::parse_list("pull, push", all).unwrap(), all);
        assert_eq!(Actions::parse_list("*", all).unwrap(), all);
        assert_eq!(Actions::parse_list("", all).unwrap(), Actions::NONE);
        assert!(Actions::parse_list("pull,fly", all).is_err());
        assert_eq!(Role::Maintainer.actions().to_list(), "pull,push,delete,waive");
    }
}
