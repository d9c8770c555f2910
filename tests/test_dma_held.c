/*
 * Unit tests of worker/dma_held.c: the DMA ranges a worker holds as mapped, which decide what a
 * timed-out DMA_MAP may unmap (broker_ops.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dma_held.h"

/* Ranges added out of order are found by any overlap, at either end, and by nothing beside
 * them; the ends are inclusive of their last byte only. */
static void test_dma_held_overlaps_at_either_end_not_beside(void **state)
{
	struct wkr_held h = {0};

	(void)state;
	for (uint64_t i = 20; i-- > 0;)
		assert_int_equal(wkr_held_add(&h, 0x100000 + i * 0x20000, 0x10000), 0);
	assert_int_equal(h.n, 20);
	for (size_t i = 1; i < h.n; i++)
		assert_true(h.r[i - 1].iova < h.r[i].iova);
	assert_true(wkr_held_overlaps(&h, 0x100000, 0x10000));
	assert_true(wkr_held_overlaps(&h, 0x10ffff, 1));
	assert_true(wkr_held_overlaps(&h, 0xff000, 0x1001));
	assert_true(wkr_held_overlaps(&h, 0, UINT64_MAX));
	assert_false(wkr_held_overlaps(&h, 0x110000, 0x10000));
	assert_false(wkr_held_overlaps(&h, 0xf0000, 0x10000));
	assert_false(wkr_held_overlaps(&h, 0x100000, 0));
	assert_true(wkr_held_overlaps(&h, 0x100000 + 19 * 0x20000 + 0xffff, 0x10000));
	assert_false(wkr_held_overlaps(&h, 0x100000 + 19 * 0x20000 + 0x10000, 0x10000));
	wkr_held_free(&h);
}

/* Only the exact range is removed (an unmap is exact); a cleared set holds nothing and takes
 * ranges again. */
static void test_dma_held_remove_exact_only(void **state)
{
	struct wkr_held h = {0};

	(void)state;
	assert_int_equal(wkr_held_add(&h, 0x40000, 0x10000), 0);
	assert_int_equal(wkr_held_add(&h, 0x80000, 0x10000), 0);
	assert_false(wkr_held_remove(&h, 0x40000, 0x20000));
	assert_false(wkr_held_remove(&h, 0x48000, 0x8000));
	assert_true(wkr_held_remove(&h, 0x40000, 0x10000));
	assert_false(wkr_held_remove(&h, 0x40000, 0x10000));
	assert_false(wkr_held_overlaps(&h, 0x40000, 0x10000));
	assert_true(wkr_held_overlaps(&h, 0x80000, 0x10000));
	wkr_held_clear(&h);
	assert_false(wkr_held_overlaps(&h, 0, UINT64_MAX));
	assert_int_equal(wkr_held_add(&h, 0x40000, 0x10000), 0);
	assert_true(wkr_held_overlaps(&h, 0x40000, 1));
	wkr_held_free(&h);
	assert_int_equal(h.n, 0);
}

/* The span of a range is the held ranges it touches, consecutive from the first: the one below
 * that reaches into it, those inside, the last that sticks out; none beside it. */
static void test_dma_held_span_counts_touching_ranges(void **state)
{
	struct wkr_held h = {0};
	size_t first = 99;

	(void)state;
	for (uint64_t i = 0; i < 5; i++) /* [0x10000 + i * 0x20000, +0x10000) */
		assert_int_equal(wkr_held_add(&h, 0x10000 + i * 0x20000, 0x10000), 0);
	assert_int_equal(wkr_held_span(&h, 0, 0x10000, &first), 0);
	assert_int_equal(wkr_held_span(&h, 0x20000, 0x10000, &first), 0);
	assert_int_equal(wkr_held_span(&h, 0x1ffff, 1, &first), 1);
	assert_int_equal(first, 0);
	assert_int_equal(wkr_held_span(&h, 0x18000, 0x30000, &first), 2);
	assert_int_equal(first, 0);
	assert_int_equal(wkr_held_span(&h, 0x30000, 0x50001, &first), 3);
	assert_int_equal(first, 1);
	assert_int_equal(wkr_held_span(&h, 0, UINT64_MAX, &first), 5);
	assert_int_equal(first, 0);
	assert_int_equal(wkr_held_span(&h, 0x90000, 0x10000, &first), 1);
	assert_int_equal(first, 4);
	assert_int_equal(wkr_held_span(&h, 0x10000, 0, &first), 0);
	/* After a reserve the add needs no memory: the capacity is there. */
	while (h.n < h.cap)
		assert_int_equal(wkr_held_add(&h, 0x100000 + h.n * 0x1000, 0x1000), 0);
	assert_int_equal(wkr_held_reserve(&h), 0);
	assert_true(h.cap > h.n);
	wkr_held_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dma_held_overlaps_at_either_end_not_beside),
	    cmocka_unit_test(test_dma_held_remove_exact_only),
	    cmocka_unit_test(test_dma_held_span_counts_touching_ranges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
