/*
 * ipc_msg: the wire header codec, received messages (their fds and their decode arena) and the
 * bounded allocator that protobuf-c decodes into.
 *
 * Trusts nothing it decodes: the header is read byte by byte in little-endian order, whatever the
 * host's order and alignment. protobuf-c's unpack has no size limit of its own (a small body of
 * many empty repeated sub-messages allocates far more than its length), so every allocation it
 * makes for one message is charged to that message's arena and refused past the budget.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc_internal.h"
#include "le.h"

void ipc__hdr_encode(const struct ipc__hdr *h, uint8_t out[IPC_HDR_SIZE])
{
	vb_le32_put(out + IPC__OFF_MAGIC, h->magic);
	vb_le16_put(out + IPC__OFF_PROTO, h->proto);
	vb_le16_put(out + IPC__OFF_VERSION, h->version);
	vb_le16_put(out + IPC__OFF_TYPE, h->type);
	out[IPC__OFF_KIND] = h->kind;
	out[IPC__OFF_NFDS] = h->nfds;
	vb_le32_put(out + IPC__OFF_ID, h->id);
	vb_le32_put(out + IPC__OFF_LEN, h->len);
}

void ipc__hdr_decode(const uint8_t in[IPC_HDR_SIZE], struct ipc__hdr *h)
{
	h->magic = vb_le32_get(in + IPC__OFF_MAGIC);
	h->proto = vb_le16_get(in + IPC__OFF_PROTO);
	h->version = vb_le16_get(in + IPC__OFF_VERSION);
	h->type = vb_le16_get(in + IPC__OFF_TYPE);
	h->kind = in[IPC__OFF_KIND];
	h->nfds = in[IPC__OFF_NFDS];
	h->id = vb_le32_get(in + IPC__OFF_ID);
	h->len = vb_le32_get(in + IPC__OFF_LEN);
}

/* Arena blocks are at least this big so that a message of many small fields costs a few
 * mallocs, not one per field. */
#define ARENA_BLOCK_MIN 4096
#define ARENA_ALIGN	alignof(max_align_t)
#define ROUND_UP(x, a)	(((x) + (a)-1) / (a) * (a))

struct ipc__arena_block {
	struct ipc__arena_block *next;
	size_t size;
	size_t used;
};
#define BLOCK_HDR ROUND_UP(sizeof(struct ipc__arena_block), ARENA_ALIGN)

static struct ipc__arena_block *arena_grow(struct ipc__arena *a, size_t need)
{
	size_t room = a->budget - a->charged, size;
	struct ipc__arena_block *b;

	/* Each block is charged whole, header included, so the budget bounds real memory. */
	if (need > SIZE_MAX - BLOCK_HDR || BLOCK_HDR + need > room)
		return NULL;
	size = need > ARENA_BLOCK_MIN ? need : ARENA_BLOCK_MIN;
	if (BLOCK_HDR + size > room)
		size = room - BLOCK_HDR;
	b = malloc(BLOCK_HDR + size);
	if (!b)
		return NULL;
	b->size = size;
	b->used = 0;
	b->next = a->head;
	a->head = b;
	a->charged += BLOCK_HDR + size;
	return b;
}

static void *arena_alloc(void *data, size_t size)
{
	struct ipc__arena *a = data;
	struct ipc__arena_block *b = a->head;
	void *p;

	if (size > SIZE_MAX - ARENA_ALIGN) {
		a->exhausted = true;
		return NULL;
	}
	size = ROUND_UP(size ? size : 1, ARENA_ALIGN);
	if (!b || b->size - b->used < size) {
		b = arena_grow(a, size);
		if (!b) {
			a->exhausted = true;
			return NULL;
		}
	}
	p = (char *)b + BLOCK_HDR + b->used;
	b->used += size;
	return p;
}

static void arena_free(void *data, void *p)
{
	/* Released with the whole arena. */
	(void)data;
	(void)p;
}

void ipc__arena_init(struct ipc__arena *a, size_t budget)
{
	memset(a, 0, sizeof(*a));
	a->budget = budget;
	a->allocator.alloc = arena_alloc;
	a->allocator.free = arena_free;
	a->allocator.allocator_data = a;
}

void ipc__arena_give(struct ipc__arena *a, void *mem, size_t size)
{
	struct ipc__arena_block *b = mem;

	if (size <= BLOCK_HDR || size > a->budget - a->charged)
		return;
	b->size = size - BLOCK_HDR;
	b->used = 0;
	b->next = a->head;
	a->head = b;
	a->inline_block = b;
	a->charged += size;
}

void ipc__arena_release(struct ipc__arena *a)
{
	struct ipc__arena_block *b, *next;

	for (b = a->head; b; b = next) {
		next = b->next;
		if (b != a->inline_block)
			free(b);
	}
	a->head = NULL;
	a->inline_block = NULL;
	a->charged = 0;
}

#define BOX_SIZE ROUND_UP(sizeof(struct ipc__msgbox), alignof(max_align_t))
/*
 * Every message carries a first arena block in its own allocation, big enough for what the
 * small messages of the hot path decode to (a trapped access's request or its Data reply: a
 * few dozen bytes), and small enough that the whole allocation stays in glibc's per-thread
 * cache (up to 1032 bytes). Without it each message cost two allocations, one of them a 4 KiB
 * block whose free() merged with the top chunk and ran malloc_consolidate() every time.
 */
#define MSG_INLINE_ARENA 512

struct ipc_msg *ipc__msg_new(size_t nfds, size_t budget)
{
	struct ipc__msgbox *b;
	struct ipc_msg *m;
	size_t head, i;

	if (nfds > IPC_FDS_MAX)
		return NULL;
	head = ROUND_UP(BOX_SIZE + sizeof(*m) + nfds * sizeof(int), ARENA_ALIGN);
	b = malloc(head + MSG_INLINE_ARENA);
	if (!b)
		return NULL;
	memset(b, 0, head);
	ipc__arena_init(&b->arena, budget);
	ipc__arena_give(&b->arena, (char *)b + head, MSG_INLINE_ARENA);
	m = ipc__box_msg(b);
	for (i = 0; i < nfds; i++)
		m->fds[i] = -1;
	return m;
}

struct ipc__msgbox *ipc__msg_box(struct ipc_msg *m)
{
	return (struct ipc__msgbox *)(void *)((char *)m - BOX_SIZE);
}

struct ipc_msg *ipc__box_msg(struct ipc__msgbox *b)
{
	return (struct ipc_msg *)(void *)((char *)b + BOX_SIZE);
}

void ipc__close_fds(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

int ipc_msg_take_fd(struct ipc_msg *m, size_t i)
{
	int fd;

	if (!m || i >= m->nfds || m->fds[i] < 0)
		return -EBADF;
	fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

void ipc_msg_free(struct ipc_msg *m)
{
	struct ipc__msgbox *b;

	if (!m)
		return;
	b = ipc__msg_box(m);
	ipc__close_fds(m->fds, m->nfds);
	/* The body lives in the arena: protobuf_c_message_free_unpacked() would only call the
	 * arena's no-op free for each piece. */
	ipc__arena_release(&b->arena);
	free(b);
}
