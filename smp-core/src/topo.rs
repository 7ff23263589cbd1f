//! PE placement: which CPU each PE thread of this process is pinned to.
//!
//! # Order rule
//!
//! 1. Take the CPUs (hwloc PUs, i.e. hardware threads) **allowed to this
//!    process**: hwloc's allowed cpuset (which respects cgroup/cpuset
//!    limits) intersected with the calling thread's affinity mask (which
//!    respects `taskset`). `plan` must therefore be called from the main
//!    thread before any PE thread is pinned.
//! 2. Group the allowed PUs by package, then NUMA node, then core, each in
//!    hwloc logical order. A core with no allowed PU is ignored.
//! 3. Consecutive PEs go to consecutive cores, so that one package / NUMA
//!    domain fills before the next, using the **first** allowed PU of each
//!    core. Only when every core has a PE do further PEs go to the second
//!    hyperthread PU of each core (in the same core order), then the third,
//!    and so on.
//! 4. With more PEs than usable PUs the order wraps around: PE `i` gets the
//!    `i % usable_pus`-th CPU and the placement is *oversubscribed*.
//!
//! For example, on 2 packages × 2 cores × 2 hyperthreads where package 0
//! holds cores 0–1, package 1 cores 2–3, and OS CPUs `n` and `n + 4` are
//! hyperthread siblings (the usual Linux numbering), `+p6` gets CPUs
//! `0, 1, 2, 3, 4, 5`: one PE per core first (package 0, then package 1),
//! then the siblings. The rule itself is the pure function `order_cpus`,
//! unit-tested on synthetic machines.
//!
//! # Fallbacks
//!
//! `plan` never fails. If hwloc is not compiled in (feature `hwloc` off)
//! or the topology cannot be loaded at run time, the CPUs of the affinity
//! mask are used in increasing OS index order, each counted as its own core
//! (hyperthreads are not recognised), and a [`WarningKind::Hwloc`] warning is
//! returned. If even the affinity mask is unknown, PEs are not pinned and a
//! [`WarningKind::Pinning`] warning is returned. Warnings are returned in
//! `Placement::warnings` rather than logged, so that the runtime can honour
//! `CHARMRS_WARN` (the runtime prints those not silenced).

use std::fmt;

use crate::config::WarningKind;

/// Largest OS CPU index that `core_affinity` can pin to (`CPU_SETSIZE` on
/// Linux); larger indices would make it panic.
const MAX_PINNABLE_CPU: usize = 1024;

/// Where the CPU list of a [`Placement`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TopoSource {
    /// hwloc topology, with package/NUMA/core grouping.
    Hwloc,
    /// The thread affinity mask only (no core grouping).
    AffinityMask,
    /// Nothing usable: PEs are not pinned.
    Unknown,
}

/// A warning produced while planning the placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopoWarning {
    /// Which `CHARMRS_WARN` name silences it.
    pub(crate) kind: WarningKind,
    /// The one-line message (see `Display`).
    pub(crate) message: String,
}

impl fmt::Display for TopoWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (silence with CHARMRS_WARN={})", self.message, self.kind)
    }
}

/// Where each PE of this process runs.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    /// OS CPU index (for `core_affinity::CoreId { id }`) per PE; `None` = do
    /// not pin.
    pub(crate) cpus: Vec<Option<usize>>,
    /// Usable cores (cores with at least one allowed PU; with the
    /// affinity-mask fallback, the number of allowed CPUs).
    pub(crate) num_cores: usize,
    /// Usable PUs (hardware threads) allowed to this process.
    pub(crate) usable_pus: usize,
    /// More PEs than usable PUs.
    pub(crate) oversubscribed: bool,
    /// Where the CPU order came from.
    pub(crate) source: TopoSource,
    /// Warnings for the runtime to print (subject to `CHARMRS_WARN`).
    pub(crate) warnings: Vec<TopoWarning>,
}

/// One core of a machine description for [`order_cpus`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CoreDesc {
    /// Logical index of the package holding the core.
    pub(crate) package: usize,
    /// Logical index of the NUMA node holding the core.
    pub(crate) numa: usize,
    /// Logical index of the core.
    pub(crate) core: usize,
    /// OS indices of the allowed PUs of the core, in hwloc logical order.
    pub(crate) pus: Vec<usize>,
}

/// The CPU fill order for a machine: every PU of `cores` exactly once,
/// first PUs of all cores (sorted by package, NUMA node, core) first, then
/// second PUs, and so on. See the module documentation.
pub(crate) fn order_cpus(cores: &[CoreDesc]) -> Vec<usize> {
    let mut sorted: Vec<&CoreDesc> = cores.iter().collect();
    sorted.sort_by_key(|c| (c.package, c.numa, c.core));
    let rounds = sorted.iter().map(|c| c.pus.len()).max().unwrap_or(0);
    let mut order = Vec::with_capacity(sorted.iter().map(|c| c.pus.len()).sum());
    for round in 0..rounds {
        order.extend(sorted.iter().filter_map(|c| c.pus.get(round).copied()));
    }
    order
}

/// Assigns CPUs of `order` to `num_pes` PEs (wrapping around) and adds the
/// oversubscription warning; pure, for tests.
fn assign(
    num_pes: u32,
    pin: bool,
    order: &[usize],
    num_cores: usize,
    source: TopoSource,
    mut warnings: Vec<TopoWarning>,
) -> Placement {
    let n = num_pes as usize;
    let usable_pus = order.len();
    let cpus =
        (0..n).map(|pe| if pin && usable_pus > 0 { Some(order[pe % usable_pus]) } else { None }).collect();
    let oversubscribed = usable_pus > 0 && n > usable_pus;
    if oversubscribed {
        warnings.push(TopoWarning {
            kind: WarningKind::Oversubscribed,
            message: format!(
                "+p{num_pes} runs {num_pes} PEs on {usable_pus} usable CPU(s): \
                 PEs share CPUs and will run slower"
            ),
        });
    }
    Placement { cpus, num_cores, usable_pus, oversubscribed, source, warnings }
}

/// The CPUs in the calling thread's affinity mask, if known.
fn affinity_mask() -> Option<Vec<usize>> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()?.into_iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    (!ids.is_empty()).then_some(ids)
}

/// The allowed cores of the machine from hwloc, restricted to `mask` when
/// given; `Err` carries why hwloc could not be used.
#[cfg(feature = "hwloc")]
fn hwloc_cores(mask: Option<&[usize]>) -> Result<Vec<CoreDesc>, String> {
    let topology = hwlocality::Topology::new().map_err(|e| e.to_string())?;
    cores_of_topology(&topology, mask)
}

/// The allowed cores of `topology`, restricted to `mask` when given.
#[cfg(feature = "hwloc")]
fn cores_of_topology(
    topology: &hwlocality::Topology,
    mask: Option<&[usize]>,
) -> Result<Vec<CoreDesc>, String> {
    use hwlocality::object::types::ObjectType;

    let allowed = topology.allowed_cpuset();
    let numas: Vec<_> = topology
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|n| Some((n.logical_index(), n.cpuset()?.clone_target())))
        .collect();

    let mut cores: Vec<CoreDesc> = Vec::new();
    // PUs in logical order; each joins the description of its core (or
    // stands as its own core when the topology has no Core objects).
    for pu in topology.objects_with_type(ObjectType::PU) {
        let Some(os) = pu.os_index() else { continue };
        if !allowed.is_set(os) || mask.is_some_and(|m| m.binary_search(&os).is_err()) {
            continue;
        }
        let core = pu.first_ancestor_with_type(ObjectType::Core);
        let core_key = core.map_or(usize::MAX - pu.logical_index(), |c| c.logical_index());
        let package = pu.first_ancestor_with_type(ObjectType::Package).map_or(0, |p| p.logical_index());
        // NUMA nodes are memory children in hwloc 2, not ancestors: match
        // by cpuset.
        let numa = numas.iter().find(|(_, set)| set.is_set(os)).map_or(0, |(i, _)| *i);
        match cores.iter_mut().find(|c| c.core == core_key) {
            Some(c) => c.pus.push(os),
            None => cores.push(CoreDesc { package, numa, core: core_key, pus: vec![os] }),
        }
    }
    if cores.is_empty() {
        return Err("no allowed PU in the hwloc topology".to_owned());
    }
    Ok(cores)
}

/// Without the `hwloc` feature there is no topology.
#[cfg(not(feature = "hwloc"))]
fn hwloc_cores(_mask: Option<&[usize]>) -> Result<Vec<CoreDesc>, String> {
    Err("charmrs was built without the `hwloc` feature".to_owned())
}

/// Plans the placement of `num_pes` PEs (see the module documentation).
///
/// Never fails: falls back to the affinity mask, or to no pinning, and
/// reports why in [`Placement::warnings`]. With `pin == false` every entry
/// of [`Placement::cpus`] is `None`, but the counts are still computed.
pub(crate) fn plan(num_pes: u32, pin: bool) -> Placement {
    let mask = affinity_mask();
    let mut warnings = Vec::new();
    match hwloc_cores(mask.as_deref()) {
        Ok(cores) => {
            let order = order_cpus(&cores);
            return assign(num_pes, pin, &order, cores.len(), TopoSource::Hwloc, warnings);
        }
        Err(why) => warnings.push(TopoWarning {
            kind: WarningKind::Hwloc,
            message: format!(
                "hwloc topology unavailable ({why}); placing PEs in affinity-mask order \
                 without package/NUMA/hyperthread awareness"
            ),
        }),
    }
    match mask {
        Some(order) => {
            let n = order.len();
            assign(num_pes, pin, &order, n, TopoSource::AffinityMask, warnings)
        }
        None => {
            warnings.push(TopoWarning {
                kind: WarningKind::Pinning,
                message: "cannot determine the CPUs usable by this process; PEs will not be pinned"
                    .to_owned(),
            });
            let mut p = assign(num_pes, false, &[], 0, TopoSource::Unknown, warnings);
            let guess = std::thread::available_parallelism().map_or(1, |n| n.get());
            p.num_cores = guess;
            p.usable_pus = guess;
            p.oversubscribed = num_pes as usize > guess;
            p
        }
    }
}

/// Pins the calling thread to OS CPU `cpu` (`core_affinity::set_for_current`).
/// Returns false if the OS refused (the runtime then warns once, kind
/// [`WarningKind::Pinning`]).
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    if cpu >= MAX_PINNABLE_CPU {
        return false;
    }
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(package: usize, numa: usize, core: usize, pus: &[usize]) -> CoreDesc {
        CoreDesc { package, numa, core, pus: pus.to_vec() }
    }

    #[test]
    fn order_two_sockets_two_numa_hyperthreaded() {
        // 2 packages x 2 NUMA nodes x 2 cores x 2 PUs, Linux-style
        // numbering: first PUs are 0..8, their siblings 8..16. Given
        // shuffled to check the sorting.
        let mut cores = Vec::new();
        for c in 0..8 {
            cores.push(core(c / 4, c / 2, c, &[c, c + 8]));
        }
        cores.reverse();
        cores.swap(1, 5);
        let order = order_cpus(&cores);
        let expected: Vec<usize> = (0..16).collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn order_fills_package_before_next_even_with_interleaved_numbering() {
        // Package 0 holds even CPUs, package 1 odd ones (a common BIOS
        // numbering); 2 cores per package, 2 PUs per core.
        let cores =
            [core(1, 1, 2, &[1, 5]), core(0, 0, 0, &[0, 4]), core(1, 1, 3, &[3, 7]), core(0, 0, 1, &[2, 6])];
        assert_eq!(order_cpus(&cores), [0, 2, 1, 3, 4, 6, 5, 7]);
    }

    #[test]
    fn order_uneven_cores_and_no_smt() {
        // A core with one allowed PU (the sibling excluded by taskset).
        let cores = [core(0, 0, 0, &[0, 2]), core(0, 0, 1, &[1])];
        assert_eq!(order_cpus(&cores), [0, 1, 2]);
        let flat: Vec<CoreDesc> = (0..4).map(|c| core(0, 0, c, &[c])).collect();
        assert_eq!(order_cpus(&flat), [0, 1, 2, 3]);
        assert!(order_cpus(&[]).is_empty());
    }

    #[test]
    fn order_numa_inside_package() {
        // One package, two NUMA nodes, numbering interleaved across nodes.
        let cores = [core(0, 1, 1, &[1]), core(0, 0, 0, &[0]), core(0, 1, 3, &[3]), core(0, 0, 2, &[2])];
        assert_eq!(order_cpus(&cores), [0, 2, 1, 3]);
    }

    #[test]
    fn assign_wraps_and_flags_oversubscription() {
        let p = assign(5, true, &[0, 1], 2, TopoSource::Hwloc, Vec::new());
        assert_eq!(p.cpus, [Some(0), Some(1), Some(0), Some(1), Some(0)]);
        assert!(p.oversubscribed);
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].kind, WarningKind::Oversubscribed);
        let m = p.warnings[0].to_string();
        assert!(m.contains("+p5") && m.contains("CHARMRS_WARN=oversubscribed"), "{m}");

        let p = assign(2, true, &[3, 1], 2, TopoSource::Hwloc, Vec::new());
        assert_eq!(p.cpus, [Some(3), Some(1)]);
        assert!(!p.oversubscribed && p.warnings.is_empty());

        let p = assign(3, false, &[0, 1], 2, TopoSource::Hwloc, Vec::new());
        assert_eq!(p.cpus, [None, None, None]);
        assert!(p.oversubscribed);
    }

    #[test]
    fn plan_on_this_machine() {
        let mask = affinity_mask().expect("affinity mask on Linux");
        let usable = mask.len();
        for p in 1..=4u32 {
            let pl = plan(p, true);
            assert_eq!(pl.cpus.len(), p as usize);
            assert_eq!(pl.usable_pus, usable);
            assert_eq!(pl.oversubscribed, p as usize > usable, "{pl:?}");
            assert!(pl.num_cores >= 1 && pl.num_cores <= usable);
            for c in &pl.cpus {
                assert!(mask.contains(&c.expect("pinned")));
            }
            // Distinct CPUs while not oversubscribed.
            let mut seen: Vec<usize> = pl.cpus.iter().flatten().copied().collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), (p as usize).min(usable));
            #[cfg(feature = "hwloc")]
            assert_eq!(pl.source, TopoSource::Hwloc, "{:?}", pl.warnings);
            #[cfg(not(feature = "hwloc"))]
            {
                assert_eq!(pl.source, TopoSource::AffinityMask);
                assert!(pl.warnings.iter().any(|w| w.kind == WarningKind::Hwloc));
            }
            assert_eq!(pl.warnings.iter().any(|w| w.kind == WarningKind::Oversubscribed), pl.oversubscribed);
        }
        let unpinned = plan(2, false);
        assert!(unpinned.cpus.iter().all(Option::is_none));
    }

    #[test]
    fn plan_on_this_vm_two_cpus() {
        // This VM: 1 package, 1 NUMA node, 2 cores, 1 PU each; +p3 is
        // oversubscribed. Skipped elsewhere.
        if affinity_mask().map(|m| m.len()) != Some(2) {
            return;
        }
        let p2 = plan(2, true);
        assert_eq!(p2.cpus, [Some(0), Some(1)]);
        assert!(!p2.oversubscribed);
        let p3 = plan(3, true);
        assert!(p3.oversubscribed);
        assert_eq!(p3.cpus, [Some(0), Some(1), Some(0)]);
        #[cfg(feature = "hwloc")]
        assert_eq!(p3.num_cores, 2);
    }

    #[test]
    fn pin_current_thread_works_and_refuses_bad_cpus() {
        let target = plan(1, true).cpus[0].expect("a cpu");
        std::thread::spawn(move || {
            assert!(pin_current_thread(target));
            let now: Vec<usize> = core_affinity::get_core_ids().unwrap().into_iter().map(|c| c.id).collect();
            assert_eq!(now, [target]);
            assert!(!pin_current_thread(MAX_PINNABLE_CPU + 5));
            // A CPU this process may not use (index 1000 on a small box).
            assert!(!pin_current_thread(1000));
        })
        .join()
        .unwrap();
    }

    #[cfg(feature = "hwloc")]
    fn synthetic(desc: &str) -> hwlocality::Topology {
        hwlocality::Topology::builder()
            .from_synthetic(desc)
            .expect("synthetic description")
            .build()
            .expect("synthetic topology")
    }

    #[cfg(feature = "hwloc")]
    #[test]
    fn hwloc_two_sockets_two_numa_hyperthreaded() {
        // Cores c has PUs 2c, 2c+1; NUMA node = c / 2; package = c / 4.
        let topo = synthetic("pack:2 numa:2 core:2 pu:2");
        let cores = cores_of_topology(&topo, None).unwrap();
        assert_eq!(cores.len(), 8);
        for (c, d) in cores.iter().enumerate() {
            assert_eq!((d.package, d.numa, d.core), (c / 4, c / 2, c), "{d:?}");
            assert_eq!(d.pus, [2 * c, 2 * c + 1]);
        }
        let order = order_cpus(&cores);
        let expected: Vec<usize> = (0..8).map(|c| 2 * c).chain((0..8).map(|c| 2 * c + 1)).collect();
        assert_eq!(order, expected);
        // A mask (taskset) removing core 0's first PU and all of core 1.
        let mask: Vec<usize> = (0..16).filter(|&i| i != 0 && i != 2 && i != 3).collect();
        let order = order_cpus(&cores_of_topology(&topo, Some(&mask)).unwrap());
        assert_eq!(order, [1, 4, 6, 8, 10, 12, 14, 5, 7, 9, 11, 13, 15]);
        assert!(cores_of_topology(&topo, Some(&[99])).is_err());
    }

    #[cfg(feature = "hwloc")]
    #[test]
    fn hwloc_linux_style_sibling_numbering() {
        // Siblings are n and n + 4, packages hold cores {0,1} and {2,3}.
        let topo = synthetic("pack:2 core:2 pu:2(indexes=0,4,1,5,2,6,3,7)");
        let order = order_cpus(&cores_of_topology(&topo, None).unwrap());
        assert_eq!(order, [0, 1, 2, 3, 4, 5, 6, 7]);
        let p = assign(6, true, &order, 4, TopoSource::Hwloc, Vec::new());
        assert_eq!(p.cpus, [Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)]);
    }
}
