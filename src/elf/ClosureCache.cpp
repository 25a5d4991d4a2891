#include "elf/ClosureCache.h"

namespace suture {

bool ClosureCache::unchanged(const Entry& entry, const RootDirectory& root) {
    for (const ClosureInput& input : entry.inputs) {
        if (root.identity_of(input.path) != input.identity) {
            return false;
        }
    }
    return true;
}

Result<OpensslRoute> ClosureCache::openssl_route(const LoaderInputs& inputs) {
    Key key{inputs.executable_identity, inputs.root.identity(), inputs.environment};
    if (auto known = entries_.find(key); known != entries_.end()) {
        if (unchanged(known->second, inputs.root)) {
            ++statistics_.hits;
            return known->second.route;
        }
        ++statistics_.invalidated;
        entries_.erase(known);
    }
    ++statistics_.computed;
    auto closure = compute_dependency_closure(inputs);
    if (!closure) {
        return tl::unexpected(closure.error());
    }
    OpensslRoute route = suture::openssl_route(*closure);
    if (closure->uses_working_directory) {
        return route;
    }
    if (entries_.size() >= capacity_) {
        entries_.clear();
    }
    entries_.emplace(std::move(key), Entry{route, std::move(closure->inputs)});
    return route;
}

}  // namespace suture
