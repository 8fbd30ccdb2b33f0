/* The replay runner for builds without libFuzzer (gcc, no sanitizers): runs a harness once on
 * every file of the corpus directories (or files) given, in name order, and prints TAP, one
 * point per input. A broken invariant aborts, so the last "# FILE" line names the input. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "macro.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static unsigned count;

static int read_file(const char *path, uint8_t **ret, size_t *ret_size) {
        _cleanup_fclose_ FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        size_t size = 0, allocated = 0;

        if (!f)
                return -errno;
        for (;;) {
                if (size == allocated) {
                        uint8_t *n = realloc(buf, allocated = allocated ? 2 * allocated : 4096);
                        if (!n) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = n;
                }
                size_t k = fread(buf + size, 1, allocated - size, f);
                size += k;
                if (k == 0)
                        break;
        }
        if (ferror(f)) {
                free(buf);
                return -EIO;
        }
        *ret = buf;
        *ret_size = size;
        return 0;
}

static int replay_file(const char *path) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size = 0;
        int r;

        r = read_file(path, &data, &size);
        if (r < 0) {
                printf("not ok %u - %s: %s\n", ++count, path, strerror(-r));
                return r;
        }
        printf("# %s\n", path);
        fflush(stdout);
        /* A copy of exactly SIZE bytes, so a read past the end is a read past an allocation. */
        LLVMFuzzerTestOneInput(size ? data : (const uint8_t *) "", size);
        printf("ok %u - %s (%zu bytes)\n", ++count, path, size);
        fflush(stdout);
        return 0;
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int replay_path(const char *path) {
        struct dirent **entries = NULL;
        struct stat st;
        int n, failed = 0;

        if (stat(path, &st) < 0) {
                printf("not ok %u - %s: %s\n", ++count, path, strerror(errno));
                return -errno;
        }
        if (!S_ISDIR(st.st_mode))
                return replay_file(path);
        n = scandir(path, &entries, NULL, compare_names);
        if (n < 0) {
                printf("not ok %u - %s: %s\n", ++count, path, strerror(errno));
                return -errno;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *file = NULL;

                if (entries[i]->d_name[0] != '.' && asprintf(&file, "%s/%s", path, entries[i]->d_name) > 0 &&
                    replay_file(file) < 0)
                        failed = -EIO;
                free(entries[i]);
        }
        free(entries);
        return failed;
}

int main(int argc, char **argv) {
        int failed = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s CORPUS-DIR|FILE...\n", argv[0]);
                return 2;
        }
        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++)
                if (replay_path(argv[i]) < 0)
                        failed = 1;
        printf("1..%u\n", count);
        return failed;
}
