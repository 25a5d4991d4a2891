/* A program that needs the fake libcrypto.so.99 of the build tree, found
   through the $ORIGIN-relative RUNPATH meson gives it (the loader model's
   test of DT_RUNPATH and $ORIGIN). */
const char* fake_openssl_version(void);

int main(void) {
    return fake_openssl_version() == 0;
}
