//! Giving freed memory back to the OS (glibc).
//!
//! Every HTTP connection and every session runs on a thread of its own, and glibc gives threads
//! their own malloc arenas (up to eight per core), each of which keeps what was freed in it.
//! A burst of large requests then leaves hundreds of MiB resident that nothing uses: 100,000
//! malformed requests took the broker from 9 to 297 MiB RSS and it stayed there. So the broker
//! uses at most two arenas ([`limit_arenas`], at start) and hands free pages back every
//! `reaper_interval` ([`trim`], from the reaper thread).
//!
//! A C library may zero a large struct at init and then write only a few of its pages: each
//! libssh2 session is one 83 KB `malloc` (two 35,000-byte packet buffers and an 8 KiB banner
//! buffer) that `libssh2_session_init_ex` `memset`s, which makes every page of it resident for the
//! session's whole life although a held session writes only the start of each buffer.
//! [`release_zero_pages`] hands the all-zero pages of such a block back to the kernel right after
//! the init; the ones the library writes later come back one by one as it writes them.
//!
//! Elsewhere (musl, other systems) all of these are no-ops.

/// At most two malloc arenas. Call before threads are started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive int.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Return the free pages of every arena to the OS (`malloc_trim`). Takes each arena's lock in
/// turn; a few milliseconds at most.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Give the kernel back every page of the `malloc`ed `block` that holds only zero bytes, and
/// return how many bytes that was. Such a page reads as zeros again afterwards (an anonymous
/// private page after `MADV_DONTNEED` is a fresh zero page), so nothing that reads or writes the
/// block can tell; it just is not resident until it is written again. Only pages wholly inside
/// the block (`malloc_usable_size`) are looked at, so neither malloc's own headers nor a
/// neighbouring block are. About 7 µs for 83 KB (one read pass and one `madvise` per run of
/// zero pages), plus a page fault for each released page written later.
///
/// # Safety
///
/// `block` is null or a live block from this process's `malloc` (glibc's, the one `free`
/// takes back), and no other thread reads or writes it during the call: a write between the
/// zero check and the `madvise` would be lost.
pub unsafe fn release_zero_pages(block: *mut std::ffi::c_void) -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if block.is_null() {
            return 0;
        }
        // SAFETY: block is a live malloc block (the caller's promise).
        let len = unsafe { libc::malloc_usable_size(block) };
        let page = page_size();
        let first = (block as usize).next_multiple_of(page);
        let end = (block as usize + len) / page * page;
        let mut released = 0;
        let mut run: Option<usize> = None;
        let mut at = first;
        while at < end {
            // SAFETY: [at, at + page) lies inside the block, which nobody else touches now; the
            // start is page-aligned, so it is aligned for u64.
            let words = unsafe { std::slice::from_raw_parts(at as *const u64, page / 8) };
            let zero = words.iter().all(|&w| w == 0);
            match (zero, run) {
                (true, None) => run = Some(at),
                (false, Some(from)) => {
                    released += advise_dontneed(from, at - from);
                    run = None;
                }
                _ => {}
            }
            at += page;
        }
        if let Some(from) = run {
            released += advise_dontneed(from, end - from);
        }
        released
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = block;
        0
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// `madvise(MADV_DONTNEED)` on whole pages that hold only zeros; the bytes released (0 if the
/// kernel refused, which changes nothing).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn advise_dontneed(from: usize, len: usize) -> usize {
    // SAFETY: [from, from + len) is page-aligned, inside a live malloc block that the caller
    // owns, and holds only zeros, which is what the pages read as afterwards.
    let r = unsafe { libc::madvise(from as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if r == 0 {
        len
    } else {
        0
    }
}

/// Resident pages of [from, from + len) (both page-aligned), by mincore.
#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
fn resident(from: usize, len: usize) -> Vec<bool> {
    let page = page_size();
    let mut v = vec![0u8; len / page];
    // SAFETY: the range is mapped (the caller's live block); v has one byte per page.
    let r = unsafe { libc::mincore(from as *mut libc::c_void, len, v.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    v.iter().map(|b| b & 1 == 1).collect()
}

/// (resident, all) bytes of the pages that hold part of the malloc'd `block`.
///
/// # Safety
///
/// `block` is a live block from this process's `malloc`.
#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
pub(crate) unsafe fn resident_bytes(block: *mut std::ffi::c_void) -> (usize, usize) {
    let page = page_size();
    // SAFETY: the caller's promise.
    let len = unsafe { libc::malloc_usable_size(block) };
    let from = block as usize / page * page;
    let end = (block as usize + len).next_multiple_of(page);
    let pages = resident(from, end - from);
    (pages.iter().filter(|r| **r).count() * page, end - from)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_of_a_block_are_released_and_still_read_as_zero() {
        // 20 pages: from a malloc arena, like a libssh2 session; 40: its own mmap.
        for pages in [20, 40] {
            zero_pages_released(pages * page_size());
        }
    }

    fn zero_pages_released(size: usize) {
        let page = page_size();
        // SAFETY: a fresh block, only this thread uses it; freed at the end.
        unsafe {
            let block = libc::malloc(size) as *mut u8;
            assert!(!block.is_null());
            std::ptr::write_bytes(block, 0, size);
            // Three pages written after the zeroing: the one at 10 pages in, and the block's
            // first and last byte (in pages that are only partly inside the block).
            let tenth = (block as usize).next_multiple_of(page) + 10 * page;
            *((tenth + 123) as *mut u8) = 7;
            *block = 1;
            *block.add(size - 1) = 2;
            let released = release_zero_pages(block.cast());
            let first = (block as usize).next_multiple_of(page);
            let end = (block as usize + size) / page * page;
            assert_eq!(
                released,
                end - first - page,
                "all whole pages but the written one"
            );
            let res = resident(first, end - first);
            for (i, r) in res.iter().enumerate() {
                assert_eq!(*r, first + i * page == tenth, "page {i} resident: {r}");
            }
            // The contents are unchanged: zeros where they were, the written bytes kept.
            let bytes = std::slice::from_raw_parts(block, size);
            let nonzero: Vec<(usize, u8)> = bytes
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, b)| *b != 0)
                .collect();
            let at = tenth + 123 - block as usize;
            assert_eq!(nonzero, vec![(0, 1), (at, 7), (size - 1, 2)]);
            // A released page is written to as before.
            *((first + 3 * page) as *mut u8) = 9;
            assert_eq!(*((first + 3 * page) as *const u8), 9);
            libc::free(block.cast());
        }
    }

    #[test]
    fn a_null_or_small_block_releases_nothing() {
        // SAFETY: null is allowed; the small block is ours and freed at once.
        unsafe {
            assert_eq!(release_zero_pages(std::ptr::null_mut()), 0);
            let b = libc::calloc(1, 64);
            assert_eq!(release_zero_pages(b), 0);
            libc::free(b);
        }
    }
}
