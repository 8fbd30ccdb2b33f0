/* Blob files. Uploads go to an O_TMPFILE in the blob directory (a named ".tmp-" file where
 * the file system lacks O_TMPFILE; those are swept at start). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "random.h"
#include "blobfiles.h"
#include "digest.h"

struct BlobFiles {
        int dir_fd; /* <state>/blobs/sha256 */
        char *dir;  /* its absolute path */
};

struct BlobUpload {
        BlobFiles *files;
        int fd;
        char tmp_name[32]; /* "" for O_TMPFILE */
        Digest *digest;
        uint64_t size;
        char expected[DIGEST_STR_LEN + 1];
        bool created_name; /* the commit linked the name (it was not there) */
};

static int mkdir_at(int dir_fd, const char *name, int *ret_fd) {
        if (mkdirat(dir_fd, name, 0750) < 0 && errno != EEXIST)
                return negative_errno();
        *ret_fd = openat(dir_fd, name, O_DIRECTORY | O_CLOEXEC | O_RDONLY);
        return *ret_fd < 0 ? negative_errno() : 0;
}


int blobfiles_open(const char *state_dir, BlobFiles **ret) {
        _cleanup_close_ int state_fd = -1, blobs_fd = -1;
        BlobFiles *b;
        DIR *d;
        struct dirent *de;
        int fd, r;

        state_fd = open(state_dir, O_DIRECTORY | O_CLOEXEC | O_RDONLY);
        if (state_fd < 0)
                return negative_errno(); /* the manager says which directory */
        r = mkdir_at(state_fd, "blobs", &blobs_fd);
        if (r == 0)
                r = mkdir_at(blobs_fd, "sha256", &fd);
        if (r < 0)
                return r;

        /* Remove temporaries left by a crash mid-upload. */
        d = fdopendir(dup(fd));
        if (d) {
                while ((de = readdir(d)))
                        if (strncmp(de->d_name, ".tmp-", 5) == 0)
                                unlinkat(fd, de->d_name, 0);
                closedir(d);
        }

        b = calloc(1, sizeof *b);
        if (!b) {
                close(fd);
                return -ENOMEM;
        }
        b->dir_fd = fd;
        b->dir = realpath(state_dir, NULL);
        if (!b->dir) {
                blobfiles_free(b);
                return -ENOMEM;
        }
        *ret = b;
        return 0;
}

BlobFiles *blobfiles_free(BlobFiles *b) {
        if (b) {
                free(b->dir);
                close(b->dir_fd);
                free(b);
        }
        return NULL;
}

static const char *hex_of(const char *digest) {
        return digest + 7; /* callers pass validated "sha256:<hex>" */
}

int blobfiles_open_read(BlobFiles *b, const char *digest, int *ret_fd, uint64_t *ret_size) {
        struct stat st;
        int fd = openat(b->dir_fd, hex_of(digest), O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0) {
                close(fd);
                return negative_errno();
        }
        *ret_fd = fd;
        *ret_size = (uint64_t) st.st_size;
        return 0;
}

int blobfiles_path(BlobFiles *b, const char *digest, char *out, size_t size) {
        int n = snprintf(out, size, "%s/blobs/sha256/%s", b->dir, hex_of(digest));
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

int blobfiles_exists(BlobFiles *b, const char *digest) {
        return faccessat(b->dir_fd, hex_of(digest), F_OK, 0) == 0;
}

int blobfiles_remove(BlobFiles *b, const char *digest) {
        if (unlinkat(b->dir_fd, hex_of(digest), 0) < 0 && errno != ENOENT)
                return negative_errno();
        return fsync(b->dir_fd) < 0 ? negative_errno() : 0;
}

int blobfiles_foreach(BlobFiles *b, int (*fn)(const char *digest, void *userdata), void *userdata) {
        DIR *d = fdopendir(dup(b->dir_fd));
        struct dirent *de;
        char digest[DIGEST_STR_LEN + 1];
        int r = 0;

        if (!d)
                return negative_errno();
        rewinddir(d);
        while (r == 0 && (de = readdir(d))) {
                if (strlen(de->d_name) != DIGEST_HEX_LEN)
                        continue;
                memcpy(digest, "sha256:", 7);
                memcpy(digest + 7, de->d_name, DIGEST_HEX_LEN + 1);
                if (digest_is_valid(digest))
                        r = fn(digest, userdata);
        }
        closedir(d);
        return r;
}

int blob_upload_begin(BlobFiles *b, const char *digest, BlobUpload **ret) {
        _cleanup_(blob_upload_freep) BlobUpload *u = NULL;
        int r;

        u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->files = b;
        u->fd = -1;
        snprintf(u->expected, sizeof u->expected, "%s", digest);
        u->fd = openat(b->dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640);
        if (u->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
                char hex[9];
                r = random_hex(hex, 4);
                if (r < 0)
                        return r; /* the request's 500 says so, with its request id */
                snprintf(u->tmp_name, sizeof u->tmp_name, ".tmp-%s", hex);
                u->fd = openat(b->dir_fd, u->tmp_name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
        }
        if (u->fd < 0)
                return negative_errno(); /* ENOSPC is a 507; anything else a 500, logged with its request */
        r = digest_new(&u->digest);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(u);
        return 0;
}

int blob_upload_write(BlobUpload *u, const void *data, size_t n) {
        const char *p = data;
        int r = digest_update(u->digest, data, n);

        if (r < 0)
                return r;
        while (n > 0) {
                ssize_t k = write(u->fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += k;
                n -= (size_t) k;
                u->size += (uint64_t) k;
        }
        return 0;
}

uint64_t blob_upload_size(const BlobUpload *u) {
        return u->size;
}

int blob_upload_commit(BlobUpload *u, ApiError *e) {
        char actual[DIGEST_STR_LEN + 1], proc[64];
        int r;

        r = digest_final(u->digest, actual);
        if (r < 0)
                return r;
        if (!streq(actual, u->expected))
                return api_error_set(e, AVIARY_E_DIGEST_MISMATCH,
                                     "uploaded data has digest %s, not %s; nothing was stored", actual, u->expected);
        if (fsync(u->fd) < 0)
                return negative_errno();
        if (u->tmp_name[0]) {
                u->created_name = !blobfiles_exists(u->files, u->expected);
                if (renameat(u->files->dir_fd, u->tmp_name, u->files->dir_fd, hex_of(u->expected)) < 0)
                        return negative_errno();
                u->tmp_name[0] = 0;
        } else {
                snprintf(proc, sizeof proc, "/proc/self/fd/%d", u->fd);
                if (linkat(AT_FDCWD, proc, u->files->dir_fd, hex_of(u->expected), AT_SYMLINK_FOLLOW) == 0)
                        u->created_name = true;
                else if (errno != EEXIST)
                        return negative_errno();
        }
        return fsync(u->files->dir_fd) < 0 ? negative_errno() : 0;
}

bool blob_upload_created_name(const BlobUpload *u) {
        return u->created_name;
}

BlobUpload *blob_upload_free(BlobUpload *u) {
        if (!u)
                return NULL;
        if (u->fd >= 0)
                close(u->fd);
        if (u->tmp_name[0])
                unlinkat(u->files->dir_fd, u->tmp_name, 0);
        digest_free(u->digest);
        free(u);
        return NULL;
}
