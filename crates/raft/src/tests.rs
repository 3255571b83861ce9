use super::*;

#[test]
fn index_bounds_cover_every_range_shape() {
    assert_eq!(index_bounds(&(3..3)), None);
    assert_eq!(index_bounds(&(3..4)), Some((3, 3)));
    assert_eq!(index_bounds(&(3..=3)), Some((3, 3)));
    assert_eq!(
        index_bounds(&(Bound::Included(5), Bound::Excluded(3))),
        None
    );
    assert_eq!(index_bounds(&(..)), Some((0, u64::MAX)));
    assert_eq!(index_bounds(&(..0)), None);
    assert_eq!(index_bounds(&(7..)), Some((7, u64::MAX)));
    assert_eq!(
        index_bounds(&(Bound::Excluded(u64::MAX), Bound::Unbounded)),
        None
    );
}

#[test]
fn the_recommended_config_is_valid() {
    let c = raft_config("tidegate");
    assert_eq!(c.cluster_name, "tidegate");
    assert_eq!(c.heartbeat_interval, 250);
    assert_eq!(
        (c.election_timeout_min, c.election_timeout_max),
        (800, 1600)
    );
    assert_eq!(c.max_in_snapshot_log_to_keep, 1_000);
}
