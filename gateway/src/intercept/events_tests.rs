use std::net::{Ipv4Addr, SocketAddr};

use gateway_common::{AF_INET, AF_INET6, mapped_v4};

use super::*;

fn event(kind: u32, cgroup: u64, suppressed: u32) -> KernelEvent {
    KernelEvent {
        kind,
        pid: 4242,
        cgroup_id: cgroup,
        netns_cookie: 4096,
        uid: 1000,
        suppressed,
        addr: mapped_v4([10, 1, 2, 3]),
        port: 443,
        family: AF_INET,
        sock_type: 2,
        _pad: 0,
        at_ns: 123,
    }
}

/// The bytes the kernel puts on the ring: the struct as laid out.
fn bytes(e: &KernelEvent) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(e.kind.to_ne_bytes());
    b.extend(e.pid.to_ne_bytes());
    b.extend(e.cgroup_id.to_ne_bytes());
    b.extend(e.netns_cookie.to_ne_bytes());
    b.extend(e.uid.to_ne_bytes());
    b.extend(e.suppressed.to_ne_bytes());
    b.extend(e.addr);
    b.extend(e.port.to_ne_bytes());
    b.extend(e.family.to_ne_bytes());
    b.extend(e.sock_type.to_ne_bytes());
    b.extend(e._pad.to_ne_bytes());
    b.extend(e.at_ns.to_ne_bytes());
    assert_eq!(b.len(), size_of::<KernelEvent>());
    b
}

fn refusal(cgroup: u64, suppressed: u32) -> Refusal {
    parse(&bytes(&event(event_kind::UDP_REFUSED, cgroup, suppressed))).unwrap()
}

#[test]
fn a_kernel_event_reads_field_by_field() {
    let r = refusal(77, 5);
    assert_eq!(
        r,
        Refusal {
            kind: Refused::Udp,
            cgroup: CgroupId::new(77),
            pid: 4242,
            uid: 1000,
            netns_cookie: 4096,
            dest: SocketAddr::from((Ipv4Addr::new(10, 1, 2, 3), 443)),
            udp: true,
            suppressed: 5,
            at_ns: 123,
        }
    );
    let mut v6 = event(event_kind::NOT_RECORDED, 1, 0);
    v6.addr = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    v6.family = AF_INET6;
    v6.sock_type = 1;
    let r = parse(&bytes(&v6)).unwrap();
    assert_eq!(r.dest, "[2001:db8::1]:443".parse::<SocketAddr>().unwrap());
    assert!(!r.udp);
    assert_eq!(r.kind.decision(), Decision::NotRecorded);
}

#[test]
fn records_of_another_size_or_kind_are_refused() {
    let b = bytes(&event(event_kind::UDP_REFUSED, 1, 0));
    assert_eq!(parse(&b[..48]), Err(ParseError::Size(48)));
    assert_eq!(
        parse(&[b.clone(), vec![0; 8]].concat()),
        Err(ParseError::Size(72))
    );
    assert_eq!(parse(&bytes(&event(99, 1, 0))), Err(ParseError::Kind(99)));
}

#[test]
fn every_kind_has_its_own_decision() {
    let kinds = [
        (event_kind::UDP_REFUSED, "udp_refused"),
        (event_kind::NETNS_UNREACHED, "netns_unreached"),
        (event_kind::UNCONFIGURED, "unconfigured"),
        (event_kind::NOT_RECORDED, "not_recorded"),
    ];
    for (kind, word) in kinds {
        let r = parse(&bytes(&event(kind, 1, 0))).unwrap();
        assert_eq!(r.kind.decision().as_str(), word);
    }
}

#[test]
fn the_budget_lets_a_window_of_rows_through_and_counts_the_rest() {
    let mut b = Budget::default();
    let t0 = Instant::now();
    let flood = refusal(7, 0);
    let rows = (0..1000)
        .filter(|_| matches!(b.admit(&flood, t0), Admit::Row { .. }))
        .count();
    assert_eq!(rows, AUDIT_ROWS_PER_WINDOW as usize);
    // Another cgroup has its own budget.
    assert_eq!(b.admit(&refusal(8, 0), t0), Admit::Row { carried: 0 });
    // Kernel-side counts add to what is pending.
    assert_eq!(b.admit(&refusal(7, 40), t0), Admit::Counted);
    // Nothing closes before the window is over ...
    assert!(b.close(t0 + AUDIT_WINDOW / 2, false).is_empty());
    // ... then one summary per cgroup with refusals in no row.
    let summaries = b.close(t0 + AUDIT_WINDOW, false);
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].0.cgroup, CgroupId::new(7));
    assert_eq!(summaries[0].1, 1000 - u64::from(AUDIT_ROWS_PER_WINDOW) + 41);
    // A new window starts afresh.
    assert_eq!(
        b.admit(&flood, t0 + AUDIT_WINDOW),
        Admit::Row { carried: 0 }
    );
}

#[test]
fn a_count_pending_when_the_window_turns_rides_on_the_next_row() {
    let mut b = Budget::default();
    let t0 = Instant::now();
    let r = refusal(7, 0);
    for _ in 0..AUDIT_ROWS_PER_WINDOW + 3 {
        b.admit(&r, t0);
    }
    assert_eq!(
        b.admit(&refusal(7, 2), t0 + AUDIT_WINDOW),
        Admit::Row { carried: 5 }
    );
    assert!(b.close(t0 + AUDIT_WINDOW, true).is_empty());
}

#[test]
fn the_first_row_carries_what_the_kernel_counted() {
    let mut b = Budget::default();
    assert_eq!(
        b.admit(&refusal(7, 9), Instant::now()),
        Admit::Row { carried: 9 }
    );
}

#[test]
fn cgroups_past_the_bound_are_counted_only() {
    let mut b = Budget::default();
    let t0 = Instant::now();
    for id in 0..MAX_TRACKED as u64 {
        assert!(matches!(b.admit(&refusal(id, 0), t0), Admit::Row { .. }));
    }
    assert_eq!(b.admit(&refusal(u64::MAX, 3), t0), Admit::Counted);
    assert_eq!(b.untracked, 4);
    // Closed windows make room again.
    b.close(t0 + AUDIT_WINDOW, false);
    assert!(matches!(
        b.admit(&refusal(u64::MAX, 0), t0 + AUDIT_WINDOW),
        Admit::Row { .. }
    ));
}

#[test]
fn a_record_names_the_agent_pid_and_destination() {
    let r = refusal(77, 0);
    let agent = AgentName::parse("bot").unwrap();
    let rec = record(&r, Some(&agent), 3, 123);
    assert_eq!(rec.agent.as_deref(), Some("bot"));
    assert_eq!(rec.decision, Decision::UdpRefused);
    assert_eq!(rec.method.as_deref(), Some("UDP"));
    assert_eq!(rec.host.as_deref(), Some("10.1.2.3:443"));
    let detail = rec.detail.unwrap();
    assert!(
        detail.starts_with("UDP to 10.1.2.3:443 refused in the kernel"),
        "{detail}"
    );
    assert!(
        detail.contains("agent bot, pid 4242, uid 1000, cgroup id 77, netns cookie 4096"),
        "{detail}"
    );
    assert!(
        detail.contains("; 3 more refusals from this cgroup"),
        "{detail}"
    );
    let anonymous = record(&r, None, 0, 123);
    assert!(anonymous.agent.is_none());
    assert!(!anonymous.detail.unwrap().contains("more refusals"));
    let sum = summary(&r, None, 99_990, 123);
    assert_eq!(sum.decision, Decision::UdpRefused);
    assert!(
        sum.detail
            .unwrap()
            .starts_with("99990 refusals in the kernel from cgroup id 77")
    );
}

#[test]
fn an_event_is_filed_when_it_happened() {
    let at = wall_time(1_000_000_000, 61_000_000_000);
    let ago = Utc::now() - at;
    assert!(
        ago >= chrono::TimeDelta::seconds(60) && ago < chrono::TimeDelta::seconds(62),
        "{ago}"
    );
    // A clock read before the event (it cannot be) files it now.
    assert!(Utc::now() - wall_time(5, 1) < chrono::TimeDelta::seconds(1));
}
