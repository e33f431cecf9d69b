// SPDX-License-Identifier: GPL-2.0
// The (dev, ino) -> node id index: correctness under churn, since a long
// running server inserts and erases millions of times.
#include "state/inode_index.h"

#include <gtest/gtest.h>
#include <map>
#include <random>

using holdfast::state::InodeIndex;

TEST(InodeIndex, FindInsertErase)
{
    InodeIndex ix;
    EXPECT_EQ(InodeIndex::kNone, ix.find(1, 2));
    EXPECT_TRUE(ix.insert(1, 2, 7));
    EXPECT_FALSE(ix.insert(1, 2, 8)); // same identity keeps its node id
    EXPECT_EQ(7u, ix.find(1, 2));
    EXPECT_EQ(InodeIndex::kNone, ix.find(2, 1)); // dev and ino are not interchangeable
    ix.erase(1, 2);
    EXPECT_EQ(InodeIndex::kNone, ix.find(1, 2));
    EXPECT_EQ(0u, ix.size());
    EXPECT_TRUE(ix.insert(1, 2, 9)); // reinsert after erase (over a tombstone)
    EXPECT_EQ(9u, ix.find(1, 2));
}

TEST(InodeIndex, MatchesAReferenceMapUnderChurn)
{
    InodeIndex ix;
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> ref;
    std::mt19937_64 rng(42);
    uint64_t next = 2;
    for (int i = 0; i < 200000; i++) {
        uint64_t dev = rng() % 3, ino = rng() % 5000;
        auto key = std::make_pair(dev, ino);
        if (rng() % 3) {
            bool fresh = !ref.count(key);
            EXPECT_EQ(fresh, ix.insert(dev, ino, next));
            if (fresh)
                ref[key] = next++;
        } else {
            ix.erase(dev, ino);
            ref.erase(key);
        }
        if (i % 1000 == 0) {
            ASSERT_EQ(ref.size(), ix.size());
            for (auto &[k, v] : ref)
                ASSERT_EQ(v, ix.find(k.first, k.second));
        }
    }
}

TEST(InodeIndex, ReserveKeepsEntries)
{
    InodeIndex ix;
    for (uint64_t i = 0; i < 1000; i++)
        ix.insert(5, i, i + 2);
    ix.reserve(1 << 16);
    for (uint64_t i = 0; i < 1000; i++)
        EXPECT_EQ(i + 2, ix.find(5, i));
}
