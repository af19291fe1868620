/* test_index.c - being written */
#include <criterion/criterion.h>
