//! Which capabilities the workload keeps, computed as bit masks (pure; applied by [`crate::sys`]).

use std::fmt;
use std::str::FromStr;

use caps::Capability;

use crate::config::config_error;
use crate::error::Error;

/// A set of capabilities as the kernel's 64-bit mask (bit N = capability number N), the form
/// `/proc/<pid>/status` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapabilityMask(pub u64);

impl CapabilityMask {
    pub const EMPTY: CapabilityMask = CapabilityMask(0);

    pub fn all_known() -> Self {
        Self::from_capabilities(caps::all())
    }

    pub fn from_capabilities(capabilities: impl IntoIterator<Item = Capability>) -> Self {
        CapabilityMask(capabilities.into_iter().fold(0, |mask, cap| mask | cap.bitmask()))
    }

    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bitmask() != 0
    }

    pub fn intersection(self, other: Self) -> Self {
        CapabilityMask(self.0 & other.0)
    }

    pub fn without(self, other: Self) -> Self {
        CapabilityMask(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in this mask, in number order.
    pub fn capabilities(self) -> Vec<Capability> {
        let mut capabilities: Vec<Capability> = caps::all().into_iter().filter(|cap| self.contains(*cap)).collect();
        capabilities.sort_by_key(Capability::index);
        capabilities
    }

    pub fn to_caps_set(self) -> caps::CapsHashSet {
        self.capabilities().into_iter().collect()
    }
}

impl fmt::Display for CapabilityMask {
    /// Names, comma-separated (`CAP_CHOWN,CAP_KILL`), or `none`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.capabilities().iter().map(ToString::to_string).collect();
        if names.is_empty() { formatter.write_str("none") } else { formatter.write_str(&names.join(",")) }
    }
}

/// Parses the workload's capability names. Accepts the Kubernetes spelling (`NET_ADMIN`), the
/// kernel's (`CAP_NET_ADMIN`), any case, and `ALL`.
pub fn parse_capability_names(names: &[String]) -> Result<CapabilityMask, Error> {
    let mut mask = CapabilityMask::EMPTY;
    for name in names {
        if name.eq_ignore_ascii_case("ALL") || name.eq_ignore_ascii_case("CAP_ALL") {
            mask = CapabilityMask(mask.0 | CapabilityMask::all_known().0);
            continue;
        }
        let capability = Capability::from_str(&caps::to_canonical(name.trim())).map_err(|_| {
            config_error(format!(
                "unknown capability {name:?} in capabilities; use names like CAP_NET_ADMIN or \
                 NET_ADMIN (see capabilities(7))"
            ))
        })?;
        mask = CapabilityMask(mask.0 | capability.bitmask());
    }
    Ok(mask)
}

/// What to change so the workload holds exactly the capabilities it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilityPlan {
    /// Removed from the bounding set, so no later `execve` of a setuid or file-capability binary
    /// can bring them back.
    pub drop_from_bounding: CapabilityMask,
    /// The new effective and permitted sets (inheritable and ambient become empty, as runc does
    /// since CVE-2022-24769).
    pub process_set: CapabilityMask,
    /// Asked for but not held by the consumer container, so impossible to grant.
    pub unavailable: CapabilityMask,
}

/// Plans the capability change from what the workload wants and what this process holds now.
pub fn plan_capabilities(wanted: CapabilityMask, current_bounding: CapabilityMask, current_permitted: CapabilityMask) -> CapabilityPlan {
    let grantable = wanted.intersection(current_bounding).intersection(current_permitted);
    CapabilityPlan { drop_from_bounding: current_bounding.without(wanted), process_set: grantable, unavailable: wanted.without(grantable) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn names_are_accepted_in_kubernetes_and_kernel_spelling() {
        let mask = parse_capability_names(&names(&["CAP_CHOWN", "kill", "Net_Bind_Service"])).expect("valid");
        assert_eq!(mask, CapabilityMask((1 << 0) | (1 << 5) | (1 << 10)));
        assert_eq!(mask.to_string(), "CAP_CHOWN,CAP_KILL,CAP_NET_BIND_SERVICE");
    }

    #[test]
    fn all_means_every_known_capability() {
        assert_eq!(parse_capability_names(&names(&["ALL"])).expect("valid"), CapabilityMask::all_known());
        assert_eq!(parse_capability_names(&[]).expect("valid"), CapabilityMask::EMPTY);
        assert_eq!(CapabilityMask::EMPTY.to_string(), "none");
    }

    #[test]
    fn an_unknown_name_is_a_config_error_naming_it() {
        let error = parse_capability_names(&names(&["CAP_CHOWN", "CAP_FLY"])).expect_err("unknown");
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("\"CAP_FLY\""), "{error}");
    }

    #[test]
    fn the_plan_drops_everything_not_wanted_from_the_bounding_set() {
        let chown_kill = CapabilityMask((1 << 0) | (1 << 5));
        let container = CapabilityMask(0xff);
        let plan = plan_capabilities(chown_kill, container, container);
        assert_eq!(plan.drop_from_bounding, CapabilityMask(0xff & !((1 << 0) | (1 << 5))));
        assert_eq!(plan.process_set, chown_kill);
        assert!(plan.unavailable.is_empty());
    }

    #[test]
    fn capabilities_the_container_lacks_are_reported_not_granted() {
        let sys_admin = Capability::CAP_SYS_ADMIN.bitmask();
        let wanted = CapabilityMask(sys_admin | 1);
        let plan = plan_capabilities(wanted, CapabilityMask(0xff), CapabilityMask(0xff));
        assert_eq!(plan.process_set, CapabilityMask(1));
        assert_eq!(plan.unavailable, CapabilityMask(sys_admin));
        assert!(plan.drop_from_bounding.contains(Capability::CAP_SETUID));
    }

    #[test]
    fn wanting_nothing_drops_everything() {
        let plan = plan_capabilities(CapabilityMask::EMPTY, CapabilityMask(0x1ff), CapabilityMask(0x1ff));
        assert_eq!(plan.drop_from_bounding, CapabilityMask(0x1ff));
        assert_eq!(plan.process_set, CapabilityMask::EMPTY);
    }
}
