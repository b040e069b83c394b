/* pull_forms.c: prints the traversal etsd evaluates on a node to pull its
 * table (cnode/pull.h): PULL_SOURCE, a line "%% forms", then PULL_FORMS,
 * so that a Common Test case can check with erl_parse that the forms etsd
 * sends are the parse of the source it documents. */
#include <stdio.h>

#include "cnode/pull.h"

int main(void)
{
    printf("%s\n%%%% forms\n%s\n", PULL_SOURCE, PULL_FORMS);
    return 0;
}
