/* hello-debflow: print a greeting (example package for debflow). */
#include <stdio.h>
#include <string.h>

#ifndef VERSION
#define VERSION "1.0"
#endif

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("hello-debflow %s\n", VERSION);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: hello-debflow [--version]\n");
        return 2;
    }
    puts("Hello from debflow");
    return 0;
}
