/*
 * sort: the one array sort every process uses, in place of qsort().
 *
 * glibc's qsort() is a merge sort that sizes its buffer from sysinfo() once the array reaches
 * 1 KiB, and sysinfo is outside every seccomp policy here: a process that sorts 128 pointers
 * under its filter dies of SIGSYS. vb_sort() is a heap sort: no allocation, no system call,
 * O(n log n) comparisons whatever the input, not stable (equal elements may change order).
 * tests/test_libc_syscalls.sh keeps qsort out of the sandboxed binaries.
 */
#ifndef VB_BASE_SORT_H
#define VB_BASE_SORT_H

#include <stddef.h>

/* Sorts n elements of size bytes at base into the ascending order cmp defines (qsort's
 * contract: cmp returns <0, 0 or >0). n of 0 or 1 and size of 0 do nothing. */
void vb_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));

#endif
