/* Scratch directories for tests' helper processes: see scratch_dir.h. */
#define _GNU_SOURCE /* mkdtemp */
#include "scratch_dir.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int scratch_dir_make(char *dir, size_t size, const char *prefix, const char *who)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/%sXXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (mkdtemp(dir))
        return 0;
    fprintf(stderr, "%s: mkdtemp %s: ", who, dir);
    perror(NULL);
    dir[0] = '\0';
    return -1;
}

void scratch_dir_remove(const char *dir)
{
    if (!dir[0])
        return;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            scratch_dir_remove(path);
        else
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}
