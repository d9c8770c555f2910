/*
 * sort: a heap sort over elements of any size (sort.h). Trusts its caller for base, n and size;
 * touches nothing outside base[0..n).
 */
#include <stdint.h>
#include <string.h>

#include "sort.h"

/* Swaps two elements a word at a time where the size allows, since most callers sort
 * pointers or 64-bit keys. */
static void sort_swap(unsigned char *a, unsigned char *b, size_t size)
{
	size_t i = 0;

	for (; i + sizeof(uint64_t) <= size; i += sizeof(uint64_t)) {
		uint64_t t;

		memcpy(&t, a + i, sizeof(t));
		memcpy(a + i, b + i, sizeof(t));
		memcpy(b + i, &t, sizeof(t));
	}
	for (; i < size; i++) {
		unsigned char t = a[i];

		a[i] = b[i];
		b[i] = t;
	}
}

/* Moves the element at root down until it is no smaller than its children in a[0..n). */
static void sort_sift_down(unsigned char *a, size_t root, size_t n, size_t size,
			   int (*cmp)(const void *, const void *))
{
	size_t child;

	for (; (child = 2 * root + 1) < n; root = child) {
		if (child + 1 < n && cmp(a + (child + 1) * size, a + child * size) > 0)
			child++;
		if (cmp(a + root * size, a + child * size) >= 0)
			return;
		sort_swap(a + root * size, a + child * size, size);
	}
}

void vb_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	unsigned char *a = base;

	if (n < 2 || !size)
		return;
	for (size_t i = n / 2; i-- > 0;)
		sort_sift_down(a, i, n, size, cmp);
	for (size_t end = n - 1; end > 0; end--) {
		sort_swap(a, a + end * size, size);
		sort_sift_down(a, 0, end, size, cmp);
	}
}
