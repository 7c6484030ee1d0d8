//! Unit tests of one region's bookkeeping (a child module of `region.rs`, so that they reach
//! its private bitmaps and bit helpers): the bitmap check, block sizes and starts, free runs
//! found by first fit, last fit and after sealed code, and the bit-run helpers.

use super::*;

fn region(pages: usize, page: usize) -> Region {
    Region::new(0x10_0000, pages * page, page)
}

#[test]
fn the_bitmap_check_sees_a_page_whose_state_the_bitmaps_disagree_with() {
    // The debug builds' check that the free and trap bitmaps follow the pages' states: it
    // holds through the region's own changes and fails once a state changes behind them.
    let mut r = region(8, 4096);
    assert!(r.bitmaps_agree());
    r.open(2, 3, 1);
    r.seal(2, 3);
    assert!(r.bitmaps_agree());
    r.pages[3].state = PageState::Free;
    assert!(!r.bitmaps_agree(), "a freed page the free bitmap does not have");
}

#[test]
fn the_bitmap_check_sees_each_bitmap_disagree_on_its_own() {
    // Sealed code pages 2..5: clearing page 3's code bit alone, then setting page 4's trap
    // bit alone, must each fail the check.
    let mut r = region(8, 4096);
    r.open(2, 3, 1);
    r.seal(2, 3);
    set_bits(&mut r.code, 3..4, false);
    assert!(!r.bitmaps_agree(), "a sealed code page missing from the code bitmap");
    set_bits(&mut r.code, 3..4, true);
    assert!(r.bitmaps_agree());
    set_bits(&mut r.traps, 4..5, true);
    assert!(!r.bitmaps_agree(), "a trap bit on a page that is no trap page");
}

#[test]
fn a_trap_page_ending_its_region_is_idle() {
    let mut r = region(8, 4096);
    r.pages[7].trap = true;
    r.open(7, 1, 1);
    r.seal(7, 1);
    assert_eq!(r.idle_traps(), [7], "no code can follow it");
}

#[test]
fn runs_after_sealed_code_are_found_across_bitmap_words() {
    let page = 4096;
    // 130 pages: page 63 ends the bitmaps' first word, page 64 starts the second.
    let mut r = region(130, page);
    r.open(0, 64, 1);
    r.seal(0, 64);
    assert_eq!(r.anchored_run(2, page, page), Some(64), "code in one word, free pages in the next");
    r.open(64, 6, 2);
    r.seal(64, 6);
    assert_eq!(r.anchored_run(2, page, page), Some(70), "code and free pages in the second word");
}

#[test]
fn runs_after_sealed_code_are_aligned_as_addresses_not_page_numbers() {
    let page = 4096;
    // A region starting at an odd page: page 3, right after the code, is at a multiple of
    // four pages (not of eight).
    let mut r = Region::new(0x10_1000, 16 * page, page);
    r.open(2, 1, 1);
    r.seal(2, 1);
    assert_eq!(r.anchored_run(1, 4 * page, page), Some(3));
    assert_eq!(r.anchored_run(1, 8 * page, page), None, "page 3 is at no multiple of eight pages");
}

#[test]
fn block_bitmaps_give_sizes_and_containing_starts() {
    let mut r = region(4, 4096);
    let base = r.base;
    // One granule, one crossing a bitmap word, one spanning pages.
    r.mark(base, 16, true);
    r.mark(base + 1008, 48, true); // granules 63..65
    r.mark(base + 4000, 5008, true); // sizes are whole granules
    assert_eq!(r.block_size(base), Some(16));
    assert_eq!(r.block_size(base + 1008), Some(48));
    assert_eq!(r.block_size(base + 4000), Some(5008));
    assert_eq!(r.block_size(base + 16), None, "no block starts there");
    assert_eq!(r.start_at_or_before(base + 1050), Some(base + 1008));
    assert_eq!(r.start_at_or_before(base + 9000), Some(base + 4000));
    assert_eq!(r.start_at_or_before(base + 500), Some(base));
    r.mark(base, 16, false);
    assert_eq!(r.start_at_or_before(base + 500), None);
    assert_eq!(r.block_size(base), None);
    // Adjacent blocks keep their own ends.
    r.mark(base + 16, 16, true);
    r.mark(base + 32, 32, true);
    assert_eq!((r.block_size(base + 16), r.block_size(base + 32)), (Some(16), Some(32)));
}

#[test]
fn free_runs_are_found_aligned_behind_a_lead_page_or_a_trap_page() {
    let page = 4096;
    let mut r = region(16, page);
    for i in [0, 5, 6] {
        r.open(i, 1, 1);
    }
    // Free stretches: 1..5, 7..16.
    assert_eq!(r.first_fit(4, page, 0, page), Some(1));
    assert_eq!(r.first_fit(4, page, 1, page), Some(8), "1..5 leaves no lead page");
    assert_eq!(r.first_fit(3, page, 1, page), Some(2));
    // base is 0x10_0000: page 8 is the first multiple of 8 pages after the lead page.
    assert_eq!(r.first_fit(2, 8 * page, 1, page), Some(8));
    assert_eq!(r.first_fit(2, 8 * page, 0, page), Some(8));
    assert_eq!(r.first_fit(9, page, 1, page), None);
    assert_eq!(r.first_fit(9, page, 0, page), Some(7));

    r.pages[6].trap = true;
    r.seal(6, 1);
    assert_eq!(r.idle_traps(), [6]);
    assert_eq!(r.anchored_run(9, page, page), Some(7));
    assert_eq!(r.anchored_run(10, page, page), None, "past the region's end");
    assert_eq!(r.anchored_run(2, 2 * page, page), None, "page 7 is not a multiple of two pages");
    r.open(9, 1, 2);
    assert_eq!(r.anchored_run(3, page, page), None, "page 9 is taken");
    assert_eq!(r.anchored_run(2, page, page), Some(7));
    r.open(7, 1, 2);
    assert_eq!((r.anchored_run(1, page, page), r.idle_traps()), (None, alloc::vec![]), "guarding page 7");
}

#[test]
fn data_runs_are_found_from_the_top_aligned_and_above_a_floor() {
    let page = 4096;
    // 130 pages: the free bitmap spans three words.
    let mut r = region(130, page);
    assert_eq!(r.last_fit(2, page, 0, page), Some(128));
    assert_eq!(r.last_fit(130, page, 0, page), Some(0));
    assert_eq!(r.last_fit(131, page, 0, page), None);
    for i in [5, 64, 127] {
        r.open(i, 1, 1);
    }
    // Free stretches: 0..5, 6..64, 65..127, 128..130.
    assert_eq!(r.last_fit(2, page, 0, page), Some(128));
    assert_eq!(r.last_fit(3, page, 0, page), Some(124), "128..130 is too short");
    assert_eq!(r.last_fit(62, page, 0, page), Some(65));
    assert_eq!(r.last_fit(63, page, 0, page), None, "no stretch is that long");
    assert_eq!(r.last_fit(58, page, 0, page), Some(69));
    // base is 0x10_0000: multiples of 8 pages are the pages divisible by 8.
    assert_eq!(r.last_fit(3, 8 * page, 0, page), Some(120));
    assert_eq!(r.last_fit(60, 8 * page, 0, page), None, "65..127 holds no aligned 60 pages");
    assert_eq!(r.last_fit(4, page, 126, page), None, "nothing above page 126 is long enough");
    assert_eq!(r.last_fit(4, page, 60, page), Some(123));
    assert_eq!(r.last_fit(62, page, 66, page), None, "the floor cuts 65..127 short");
    assert_eq!(r.last_fit(5, page, 0, page), Some(122));
    assert_eq!(r.last_fit(2, page, 3, page), Some(128));
    r.open(6, 58, 1);
    r.open(65, 62, 1);
    r.open(128, 2, 1);
    assert_eq!(r.last_fit(2, page, 0, page), Some(3), "only 0..5 is left");
    assert_eq!(r.last_fit(2, page, 4, page), None);
}

#[test]
fn the_code_bitmap_follows_sealed_code_and_anchors_runs_after_it() {
    let page = 4096;
    let mut r = region(8, page);
    r.open(0, 2, 1);
    r.pages[1].kind = MemoryKind::ReadWrite;
    r.seal(0, 2);
    assert!(r.bitmaps_agree());
    assert_eq!(r.anchored_run(2, page, page), None, "page 1 is data, page 2 follows no code");
    r.open(2, 1, 2);
    r.seal(2, 1);
    assert_eq!(r.anchored_run(2, page, page), Some(3), "right after sealed code");
    r.begin_release(2, 1, MemoryKind::ReadWrite);
    assert!(r.bitmaps_agree());
    assert_eq!(r.anchored_run(2, page, page), None, "code being released anchors nothing");
    r.release_failed(2, 1);
    assert!(r.bitmaps_agree());
    assert_eq!(r.anchored_run(2, page, page), Some(3));
    r.release(2, 1, false);
    assert!(r.bitmaps_agree());
    assert_eq!(r.anchored_run(2, page, page), None);
}

#[test]
fn bit_runs_cross_words_and_stop_at_the_end() {
    let mut bits = [0u64; 3];
    set_bits(&mut bits, 60..130, true);
    assert_eq!((bits[0], bits[1], bits[2]), (0xF << 60, u64::MAX, 0b11));
    assert_eq!(ones_from(&bits, 60, usize::MAX), 70);
    assert_eq!(ones_from(&bits, 64, usize::MAX), 66);
    assert_eq!(ones_from(&bits, 61, 5), 5);
    assert_eq!(ones_from(&bits, 130, usize::MAX), 0);
    assert_eq!(ones_from(&bits, 500, 3), 0, "past the end");
    assert_eq!((next_one(&bits, 0), next_one(&bits, 100), next_one(&bits, 130)), (Some(60), Some(100), None));
    set_bits(&mut bits, 62..129, false);
    assert_eq!((bits[0], bits[1], bits[2]), (0b11 << 60, 0, 0b10));
    assert_eq!(next_one(&bits, 62), Some(129));
    assert_eq!(
        (prev_one(&bits, 129), prev_one(&bits, 130), prev_one(&bits, 62)),
        (Some(61), Some(129), Some(61))
    );
    assert_eq!((prev_one(&bits, 60), prev_one(&bits, 192)), (None, Some(129)));
    assert_eq!((ones_before(&bits, 62), ones_before(&bits, 61), ones_before(&bits, 130)), (2, 1, 1));
    assert_eq!(ones_before(&bits, 0), 0);
    set_bits(&mut bits, 0..192, true);
    assert_eq!(ones_from(&bits, 0, usize::MAX), 192);
    assert_eq!((ones_before(&bits, 192), ones_before(&bits, 128), ones_before(&bits, 1)), (192, 128, 1));
}
