#include <stdio.h>
#include "mom.pb-c.h"
int
main(void)
{
    return 0;
}
